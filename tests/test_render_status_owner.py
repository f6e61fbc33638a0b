"""One owner per lifecycle: resolvers/lifecycle.py makes every change of a render's status."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("editgraph", "schema", "resolvers", "models", "jobs")
OWNER = ROOT / "resolvers" / "lifecycle.py"


def _names_state(node: ast.AST) -> bool:
    """Whether an expression names a render status (``RenderStatus.DONE``); converting a
    value (``RenderStatus(row.status)``) writes nothing."""
    return any(
        isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Name | ast.Attribute)
        and ast.unparse(n.value).split(".")[-1] == "RenderStatus"
        for n in ast.walk(node)
    )


def _updates_renders(call: ast.Call) -> bool:
    """Whether ``….values(…)`` is chained on ``update(Render)``."""
    node: ast.AST = call.func
    while isinstance(node, ast.Attribute | ast.Call):
        if isinstance(node, ast.Call):
            func = node.func
            callee = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            first = node.args[0] if node.args else None
            if callee == "update" and isinstance(first, ast.Name) and first.id == "Render":
                return True
            node = func
        else:
            node = node.value
    return False


def _sets_status(node: ast.AST) -> bool:
    if isinstance(node, ast.Call):
        func = node.func
        to_renders = (isinstance(func, ast.Name) and func.id == "Render") or (
            isinstance(func, ast.Attribute) and func.attr == "values" and _updates_renders(node)
        )
        return any(
            k.arg == "status" and (to_renders or _names_state(k.value)) for k in node.keywords
        )
    if isinstance(node, ast.Dict):
        return any(
            isinstance(k, ast.Constant) and k.value == "status" and _names_state(v)
            for k, v in zip(node.keys, node.values, strict=True)
        )
    if isinstance(node, ast.Assign):
        pairs: list[tuple[ast.expr, ast.expr]] = []
        for target in node.targets:
            if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                pairs += zip(target.elts, node.value.elts, strict=False)
            else:
                pairs.append((target, node.value))
        return any(
            isinstance(t, ast.Attribute)
            and t.attr == "status"
            and ("render" in ast.unparse(t.value).lower() or _names_state(v))
            for t, v in pairs
        )
    return False


def status_writes(path: Path) -> dict[str, list[int]]:
    """The functions of a module that set a render's status, with the lines that do."""
    found: dict[str, list[int]] = {}
    tree = ast.parse(path.read_text(), filename=str(path))
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = [
                n.lineno for n in ast.walk(function) if _sets_status(n) and hasattr(n, "lineno")
            ]
            if lines:
                found[function.name] = sorted(set(lines))
    return found


def test_only_the_lifecycle_module_changes_a_render_status() -> None:
    elsewhere = {
        f"{path.relative_to(ROOT)}:{name}": lines
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != OWNER
        for name, lines in status_writes(path).items()
    }
    assert elsewhere == {}


def test_the_rule_sees_each_change_the_lifecycle_makes() -> None:
    # Each state is one function, written in the forms the rule must recognise (an
    # assignment, update(Render).values(status=…), a status keyword, a dict of values).
    assert set(status_writes(OWNER)) == {
        "queued",
        "claim",
        "done",
        "fail",
        "supersede",
        "release",
        "cancel",
        "reclaim",
        "imported",
    }

"""The room plan: editgraph → schema → resolvers → models, and jobs → resolvers/models."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"editgraph", "schema", "resolvers", "models", "jobs"}
ALLOWED = {
    "editgraph": {"editgraph", "schema", "resolvers", "models", "jobs"},
    "schema": {"schema", "resolvers", "models"},
    "resolvers": {"resolvers", "models"},
    "models": {"models"},
    "jobs": {"jobs", "resolvers", "models"},
}
# The domain stays free of the web stack: resolvers never import strawberry or starlette.
FORBIDDEN_THIRD_PARTY = {
    "resolvers": {"strawberry", "starlette", "uvicorn", "graphql"},
    "models": {"strawberry", "starlette", "uvicorn", "graphql"},
    "jobs": {"strawberry", "starlette", "uvicorn", "graphql"},
}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_the_room_plan(package: str) -> None:
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        used = imports(path)
        for name in (used & OURS) - ALLOWED[package]:
            wrong.append(f"{path.relative_to(ROOT)} imports {name}")
        for name in used & FORBIDDEN_THIRD_PARTY.get(package, set()):
            wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_the_checker_sees_a_wrong_arrow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import strawberry\nfrom schema.types import Video\nfrom models import tables\n")
    assert imports(bad) == {"strawberry", "schema", "models"}

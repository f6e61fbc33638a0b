"""The room plan: editgraph → schema → resolvers → models, and jobs → resolvers/models;
and in tests/, test modules share only tests/helpers."""

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


def wrong_arrows(root: Path, package: str) -> list[str]:
    """Every import of a module under ``root / package`` that the room plan forbids."""
    wrong = []
    for path in sorted((root / package).rglob("*.py")):
        used = imports(path)
        for name in (used & OURS) - ALLOWED[package]:
            wrong.append(f"{path.relative_to(root)} imports {name}")
        for name in used & FORBIDDEN_THIRD_PARTY.get(package, set()):
            wrong.append(f"{path.relative_to(root)} imports {name}")
    return wrong


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_the_room_plan(package: str) -> None:
    assert wrong_arrows(ROOT, package) == []


def test_the_checker_refuses_a_wrong_arrow(tmp_path: Path) -> None:
    for package in ALLOWED:
        (tmp_path / package).mkdir()
    (tmp_path / "resolvers" / "fine.py").write_text("from models import tables\nimport sqlmodel\n")
    (tmp_path / "resolvers" / "upward.py").write_text(
        "import strawberry\nfrom schema.types import Video\n"
    )
    (tmp_path / "jobs" / "nested").mkdir()
    (tmp_path / "jobs" / "nested" / "wiring.py").write_text("import editgraph.app\n")
    (tmp_path / "models" / "deep.py").write_text("from resolvers.ops import Frame\n")
    found = {package: wrong_arrows(tmp_path, package) for package in ALLOWED}
    assert {package: wrong for package, wrong in found.items() if wrong} == {
        "resolvers": [
            "resolvers/upward.py imports schema",
            "resolvers/upward.py imports strawberry",
        ],
        "models": ["models/deep.py imports resolvers"],
        "jobs": ["jobs/nested/wiring.py imports editgraph"],
    }


TESTS = ROOT / "tests"
HELPERS = "tests.helpers"


def imports_within_tests(path: Path) -> list[str]:
    """The modules of ``tests`` that ``path`` imports, relative imports included."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "tests"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append("." * node.level + (node.module or ""))
            elif node.module and node.module.split(".")[0] == "tests":
                found.append(node.module)
    return found


def shared_test_modules(tests: Path) -> list[str]:
    """Files under ``tests`` that import anything of it but ``tests.helpers``: a test module
    shares nothing; what two of them need lives in the helpers."""
    wrong = []
    for path in sorted(tests.rglob("*.py")):
        for module in imports_within_tests(path):
            if module != HELPERS and not module.startswith(HELPERS + "."):
                wrong.append(f"{path.relative_to(tests.parent)} imports {module}")
    return wrong


def test_no_test_module_imports_another() -> None:
    assert shared_test_modules(TESTS) == []


def test_the_test_import_rule_refuses_a_shared_test_module(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    (tests / "helpers").mkdir(parents=True)
    (tests / "schema").mkdir()
    (tests / "helpers" / "api.py").write_text("from tests.helpers.media import make_video\n")
    (tests / "schema" / "test_a.py").write_text(
        "from tests.helpers import measure\nfrom tests.helpers.api import Api\n"
    )
    (tests / "schema" / "test_b.py").write_text(
        "from tests.schema.test_a import APPEND\nfrom tests.conftest import Api\n"
        "from .test_a import upload\nimport tests.media\n"
    )
    assert shared_test_modules(tests) == [
        "tests/schema/test_b.py imports tests.schema.test_a",
        "tests/schema/test_b.py imports tests.conftest",
        "tests/schema/test_b.py imports .test_a",
        "tests/schema/test_b.py imports tests.media",
    ]

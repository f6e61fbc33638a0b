"""A bounded fuzz run of the GraphQL API in production mode: no 500s, no unmasked errors."""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.graphql import nodes

from editgraph.redis_embed import EmbeddedRedis, free_port
from resolvers import errors
from schema.root import SDL_PATH
from tests.helpers.processes import server_process

pytestmark = pytest.mark.slow
for name in ("Upload", "JSON", "DateTime"):
    schemathesis.graphql.scalar(name, st.text(max_size=20).map(nodes.String))
schema = schemathesis.graphql.from_path(SDL_PATH)


def codes(kind: type[errors.DomainError] = errors.DomainError) -> set[str]:
    """Every code an expected failure may carry, read from the domain's errors."""
    found = {kind.code}
    for sub in kind.__subclasses__():
        found |= codes(sub)
    return found


CODES = codes()
# What a client must never read: a traceback, a file of ours, SQL or driver text, the name of
# a Python exception. Type names of the schema (``OpError``) are not exceptions.
LEAKS = re.compile(
    r"Traceback|File \"|\w/\w+\.py\b|/(?:srv|tmp|work|home|usr|root|var)/"
    r"|\b(?:SELECT|INSERT INTO|UPDATE|DELETE FROM)\b|sqlalchemy|sqlite3|asyncpg|aiosqlite|redis\."
    r"|\b(?:Key|Type|Value|Attribute|Index|Runtime|Assertion|Integrity|Operational|Programming"
    r"|Data|Recursion|Overflow|UnicodeDecode|Connection|Timeout|NotImplemented)Error\b"
)


@pytest.fixture(scope="module")
def production_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`editgraph serve` in production mode, and the token of a user of it."""
    work = tmp_path_factory.mktemp("fuzz")
    with EmbeddedRedis(work / "redis") as redis:
        env = {
            "EDITGRAPH_ENV": "production",
            "EDITGRAPH_SECRET_KEY": "f" * 48,
            "EDITGRAPH_ALLOWED_ORIGINS": '["https://app.test"]',
            "EDITGRAPH_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'fuzz.db'}",
            "EDITGRAPH_REDIS_URL": redis.url,
            "EDITGRAPH_MEDIA_ROOT": str(work / "uploads"),
        }
        clean = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
        created = subprocess.run(
            [sys.executable, "-m", "editgraph.cli", "user", "create", "fuzzer"],
            env={**clean, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        token = created.stdout.strip().splitlines()[-1]
        with server_process(env, free_port(), work / "server.log") as base:
            yield base, token


def masked(error: dict[str, Any]) -> bool:
    """An error a stranger may see: it leaks nothing, and it is either an expected failure
    (a known code), a masked bug ("Unexpected error.", nothing more), or a complaint about
    the document or its variables (located in the document, no resolver path, no code, and
    no suggestion of names the caller did not write)."""
    message = error.get("message")
    if not isinstance(message, str) or LEAKS.search(message):
        return False
    extensions = error.get("extensions") or {}
    if extensions.get("code") in CODES:
        return True
    if message == "Unexpected error.":
        return not extensions
    return (
        not extensions
        and "path" not in error
        and bool(error.get("locations"))
        and "Did you mean" not in message
    )


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_operations_never_500_and_never_leak(
    case: Any, production_server: tuple[str, str]
) -> None:
    base, token = production_server
    response = case.call(base_url=base, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code < 500, response.text
    try:
        body = response.json()
    except ValueError:
        # A plain-text refusal from the edge (a malformed or oversized body): a 4xx, and
        # as quiet as an error in JSON.
        assert 400 <= response.status_code < 500, response.text
        assert not LEAKS.search(response.text), response.text
        return
    assert isinstance(body, dict) and ("data" in body or "errors" in body), body
    for error in body.get("errors") or []:
        assert masked(error), error


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        ({"message": "Not found", "path": ["project"], "extensions": {"code": "NOT_FOUND"}}, True),
        ({"message": "Unexpected error.", "path": ["users"]}, True),
        ({"message": "Syntax Error: Expected Name, found <EOF>.", "locations": [{}]}, True),
        ({"message": "Cannot query field 'x' on type 'Query'.", "locations": [{}]}, True),
        # A bug's own text, with or without a path.
        ({"message": "KeyError: 'owner_id'", "path": ["project"]}, False),
        ({"message": "'NoneType' has no attribute 'id'", "path": ["project"]}, False),
        ({"message": "division by zero", "locations": [{}], "path": ["me"]}, False),
        ({"message": "TypeError: unhashable type", "locations": [{}]}, False),
        # Errors without a place in the document are not the document's.
        ({"message": "connection refused"}, False),
        # Internals in a message of any kind, or beside a masked one.
        ({"message": "Syntax Error in /srv/editgraph/schema/root.py", "locations": [{}]}, False),
        (
            {
                "message": "SELECT secret FROM users failed",
                "path": ["me"],
                "extensions": {"code": "NOT_FOUND"},
            },
            False,
        ),
        (
            {"message": "Unexpected error.", "extensions": {"exception": {"stacktrace": []}}},
            False,
        ),
        (
            {
                "message": "Cannot query field 'projcts'. Did you mean 'projects'?",
                "locations": [{}],
            },
            False,
        ),
        (
            {"message": "a code nobody defined", "extensions": {"code": "OOPS"}, "locations": [{}]},
            False,
        ),
    ],
)
def test_the_fuzz_check_refuses_what_would_leak(error: dict[str, Any], shown: bool) -> None:
    assert masked(error) is shown

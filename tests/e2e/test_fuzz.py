"""A bounded fuzz run of the GraphQL API in production mode: no 500s, no unmasked errors."""

import os
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
from schema.root import SDL_PATH
from tests.helpers.processes import server_process

pytestmark = pytest.mark.slow
for name in ("Upload", "JSON", "DateTime"):
    schemathesis.graphql.scalar(name, st.text(max_size=20).map(nodes.String))
schema = schemathesis.graphql.from_path(SDL_PATH)
CODES = {
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "RATE_LIMITED",
    "QUERY_TOO_COMPLEX",
    "BAD_USER_INPUT",
    "NOT_FOUND",
}


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
    """An error a stranger may see: a known code, a complaint about the document, or masked."""
    if (error.get("extensions") or {}).get("code") in CODES:
        return True
    if error["message"] == "Unexpected error.":
        return True
    # Parse and validation errors point at the document, never at a resolver's path.
    return "path" not in error and "Did you mean" not in error["message"]


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
        return  # a plain-text 4xx from the transport (for example a malformed body)
    for error in body.get("errors") or []:
        assert masked(error), error

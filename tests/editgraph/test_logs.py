"""Log lines an operator can use: one line per operation, expected errors without a
traceback, JSON lines carrying the request id the response names."""

import io
import json
import logging
from collections.abc import Iterator

import pytest

from editgraph import logs
from tests.helpers.api import Api
from tests.helpers.db import SQLITE_ONLY

pytestmark = SQLITE_ONLY  # what is logged, not what is stored


@pytest.fixture
def json_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Every log line as editgraph writes it with EDITGRAPH_LOG_FORMAT=json."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    logs.configure("json", "info")
    try:
        yield out
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


async def test_an_expected_error_is_one_line_without_a_traceback(
    api: Api, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = await api.query(tokens["alice"], "query Accounts { users { name } }")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert not [r for r in caplog.records if r.exc_info], "an expected error has no traceback"
    lines = [r for r in caplog.records if r.name == "editgraph.graphql"]
    operation = [r for r in lines if getattr(r, "operation", None) == "Accounts"]
    assert len(operation) == 1
    line = operation[0]
    assert (line.levelno, vars(line)["outcome"], vars(line)["operation_type"]) == (
        logging.INFO,
        "FORBIDDEN",
        "query",
    )
    assert isinstance(vars(line)["user_id"], int) and vars(line)["duration_ms"] >= 0
    assert [r.getMessage() for r in lines if getattr(r, "code", None) == "FORBIDDEN"]


async def test_json_lines_carry_the_request_id_the_response_names(
    api: Api, tokens: dict[str, str], json_lines: io.StringIO
) -> None:
    headers = {"Authorization": f"Bearer {tokens['alice']}", "X-Request-Id": "support-ticket-42"}
    mine = await api.client.post(
        "/graphql", json={"query": "query Me { me { name } }"}, headers=headers
    )
    assert mine.headers["x-request-id"] == "support-ticket-42"
    # An id that is not plain is replaced by a fresh one (it would end up in log lines).
    odd = await api.client.post(
        "/graphql",
        json={"query": "query Me { me { name } }"},
        headers={**headers, "X-Request-Id": "a b\tc"},
    )
    fresh = odd.headers["x-request-id"]
    assert fresh != "a b\tc" and len(fresh) == 32
    records = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    ops = [r for r in records if r.get("operation") == "Me"]
    assert [r["request_id"] for r in ops] == ["support-ticket-42", fresh]
    assert {r["outcome"] for r in ops} == {"ok"}
    assert all(r["level"] == "INFO" and r["logger"] == "editgraph.graphql" for r in ops)


async def test_a_client_cannot_start_a_log_line_of_its_own(
    api: Api, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    forged = "x\n2026-11-22 12:00:00 ERROR editgraph.graphql: admin root revoked all tokens"
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    logs.configure("text", "info")
    try:
        query = "query($p: ID!) { project(id: $p) { id } node(id: $p) { id } }"
        body = await api.query(tokens["alice"], query, {"p": forged})
        await api.query(
            tokens["alice"],
            "mutation($p: ID!) { deleteProject(id: $p) { __typename } }",
            {"p": forged},
        )
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    assert "errors" not in body or body["errors"]
    lines = out.getvalue().splitlines()
    assert lines and not any(line.startswith("2026-11-22 12:00:00 ERROR") for line in lines)

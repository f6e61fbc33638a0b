"""Ids, cursors and stream positions that cannot name anything: typed errors, never a
driver's or Redis's."""

import base64
from pathlib import Path
from typing import Any

from resolvers import ids
from tests.helpers.api import Api, AppFactory, new_project
from tests.helpers.websocket import first_answer


def code_of(body: dict[str, Any]) -> str | None:
    """The first error's code, if there is an error."""
    errors = body.get("errors") or [{}]
    found: str | None = (errors[0].get("extensions") or {}).get("code")
    return found


def cursor(key: int) -> str:
    return base64.urlsafe_b64encode(f"k:{key}".encode()).decode()


async def test_ids_and_cursors_past_any_row_are_not_found_or_bad_input(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    lookups = """query($p: ID!, $r: ID!) {
      project(id: $p) { id } node(id: $p) { id } render: node(id: $r) { id } }"""
    for number in (2**31, 2**63, 2**64, 10**30):
        found = await api.data(
            alice, lookups, {"p": ids.encode("Project", number), "r": ids.encode("Render", number)}
        )
        assert found == {"project": None, "node": None, "render": None}
        deleted = await api.data(
            alice,
            "mutation($v: ID!) { deleteVideo(id: $v) { __typename } }",
            {"v": ids.encode("Video", number)},
        )
        assert deleted["deleteVideo"]["__typename"] == "NotFound"
        for listing in (
            "query($c: String) { projects(after: $c) { nodes { id } } }",
            "query($c: String) { videos(after: $c) { nodes { id } } }",
        ):
            body = await api.query(alice, listing, {"c": cursor(number)})
            assert code_of(body) == "BAD_USER_INPUT", body
            assert "cursor" in body["errors"][0]["message"]
        body = await api.query(
            alice,
            "query($p: ID!, $c: String) { project(id: $p) { versions(after: $c) { nodes { number } } } }",
            {"p": pid, "c": cursor(number)},
        )
        assert code_of(body) == "BAD_USER_INPUT", body
    # The largest key that can exist still pages normally.
    page = await api.data(
        alice,
        "query($c: String) { projects(after: $c) { nodes { id } } }",
        {"c": cursor(2**31 - 1)},
    )
    assert page["projects"]["nodes"] == [{"id": pid}]


async def test_render_events_after_a_cursor_redis_cannot_resume_from_is_bad_input(
    make_api: AppFactory, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    document = (
        "subscription($p: ID!, $a: String) { renderEvents(projectId: $p, after: $a) { cursor } }"
    )
    async with make_api(live=True) as api:
        base = api.base
        pid = await new_project(api, alice, media["clip"])
        for after in (
            "9" * 30 + "-0",  # past a 64-bit millisecond count
            "0-" + "9" * 5000,
            f"{2**64 - 1}-{2**64 - 1}",  # the last stream id: nothing can follow it
            "²-0",
        ):
            message = await first_answer(base, alice, document, {"p": pid, "a": after})
            assert message["type"] == "next" and message["payload"]["data"] is None, message
            [error] = message["payload"]["errors"]
            assert error["extensions"]["code"] == "BAD_USER_INPUT", error
            assert "cursor" in error["message"] and "ERR" not in error["message"]

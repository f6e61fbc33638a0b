"""Accounts as their owners and admins use them: several tokens, revoking one, a missing
token told apart from an invalid one, uploads and websockets refused in the same words."""

import asyncio
import json
from pathlib import Path

import pytest

from editgraph.cli import main
from editgraph.settings import Settings
from resolvers.errors import UnauthenticatedError
from tests.helpers.api import Api, AppFactory, code_of
from tests.helpers.db import SQLITE_ONLY
from tests.helpers.websocket import raw_socket

ME = "query Me { me { id name tokens { id label current lastUsedAt } } }"
CREATE = (
    """mutation($l: String!) { createToken(label: $l) { token apiToken { id label current } } }"""
)
REVOKE = """mutation($id: ID!) { revokeToken(id: $id) { __typename
  ... on TokenRevoked { id } ... on NotFound { message } } }"""


def message_of(body: dict[str, object]) -> str:
    errors = body["errors"]
    assert isinstance(errors, list)
    return str(errors[0]["message"])


async def test_a_user_holds_several_tokens_and_revokes_one(
    api: Api, tokens: dict[str, str]
) -> None:
    alice = tokens["alice"]
    made = (await api.data(alice, CREATE, {"l": "laptop"}))["createToken"]
    laptop = made["token"]
    assert made["apiToken"]["label"] == "laptop" and not made["apiToken"]["current"]
    assert laptop != alice and laptop.startswith("eg_")
    mine = (await api.data(laptop, ME))["me"]
    assert mine["name"] == "alice"
    listed = {t["label"]: t for t in mine["tokens"]}
    assert set(listed) == {"first token", "laptop"}
    assert listed["laptop"]["current"] and not listed["first token"]["current"]
    # Bob cannot revoke alice's token; she can, and it stops working at once.
    refused = await api.data(tokens["bob"], REVOKE, {"id": listed["laptop"]["id"]})
    assert refused["revokeToken"]["__typename"] == "NotFound"
    assert "ApiToken" not in refused["revokeToken"]["message"]  # ids as clients know them
    assert (await api.data(alice, REVOKE, {"id": listed["laptop"]["id"]}))["revokeToken"] == {
        "__typename": "TokenRevoked",
        "id": listed["laptop"]["id"],
    }
    gone = await api.query(laptop, ME)
    assert code_of(gone) == "UNAUTHENTICATED"
    assert message_of(gone) == UnauthenticatedError.INVALID
    assert (await api.data(alice, ME))["me"]["name"] == "alice"


async def test_a_missing_token_is_told_apart_from_an_invalid_one(api: Api) -> None:
    missing = await api.query(None, ME)
    invalid = await api.query("eg_not-a-token", ME)
    assert code_of(missing) == code_of(invalid) == "UNAUTHENTICATED"
    assert message_of(missing) == UnauthenticatedError.MISSING
    assert message_of(invalid) == UnauthenticatedError.INVALID


async def test_only_the_user_and_admins_see_a_users_tokens_and_projects(
    api: Api, tokens: dict[str, str]
) -> None:
    alice_id = (await api.data(tokens["alice"], ME))["me"]["id"]
    query = """query($u: ID!) { node(id: $u) { id } users { id name tokens { label }
      projects { nodes { name } } } }"""
    assert code_of(await api.query(tokens["bob"], query, {"u": alice_id})) == "FORBIDDEN"
    seen = {u["name"]: u for u in (await api.data(tokens["root"], query, {"u": alice_id}))["users"]}
    assert [t["label"] for t in seen["alice"]["tokens"]] == ["first token"]


@SQLITE_ONLY
async def test_an_upload_without_a_valid_token_is_a_401_in_the_graphql_shape(
    api: Api, media: dict[str, Path], settings: Settings
) -> None:
    operations = '{"query": "mutation($f: Upload!) { uploadVideo(file: $f) { __typename } }", '
    operations += '"variables": {"f": null}}'
    for headers, message in (
        ({}, UnauthenticatedError.MISSING),
        ({"Authorization": "Bearer eg_not-a-token"}, UnauthenticatedError.INVALID),
    ):
        with media["clip"].open("rb") as fh:
            response = await api.client.post(
                "/graphql",
                data={"operations": operations, "map": '{"0": ["variables.f"]}'},
                files={"0": ("clip.mp4", fh, "video/mp4")},
                headers=headers,
            )
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert "data" not in body
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert body["errors"][0]["message"] == message
    assert list((settings.media_root / "temp").iterdir()) == []


@SQLITE_ONLY
async def test_connection_init_takes_authorization_in_any_letter_case(
    make_api: AppFactory, tokens: dict[str, str]
) -> None:
    async with make_api(live=True) as api:
        for key in ("authorization", "Authorization", "AUTHORIZATION"):
            async with raw_socket(api.base, {key: f"Bearer {tokens['alice']}"}) as ws:
                assert json.loads(await ws.recv())["type"] == "connection_ack"
        async with raw_socket(api.base, {"Authorization": "Bearer eg_revoked"}) as ws:
            await ws.wait_closed()
            assert ws.close_code == 4403


@SQLITE_ONLY
async def test_the_command_line_prints_a_new_token_for_a_lost_login(
    api: Api,
    tokens: dict[str, str],
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDITGRAPH_DATABASE_URL", api.services.db.url)
    assert await asyncio.to_thread(main, ["user", "token", "root", "--label", "recovery"]) == 0
    fresh = capsys.readouterr().out.strip().splitlines()[-1]
    assert (await api.data(fresh, ME))["me"]["name"] == "root"
    assert (await api.data(tokens["root"], ME))["me"]["name"] == "root"  # the old one too
    assert await asyncio.to_thread(main, ["user", "token", "nobody"]) == 1
    assert "no user named 'nobody'" in capsys.readouterr().err


@SQLITE_ONLY
async def test_a_token_revoked_while_its_websocket_is_open_stops_working_there(
    make_api: AppFactory, tokens: dict[str, str]
) -> None:
    async with make_api(live=True) as api:
        made = (await api.data(tokens["alice"], CREATE, {"l": "tablet"}))["createToken"]
        tablet, tablet_id = made["token"], made["apiToken"]["id"]
        async with raw_socket(api.base, {"authorization": f"Bearer {tablet}"}) as ws:
            assert json.loads(await ws.recv())["type"] == "connection_ack"

            async def ask(op_id: str) -> dict[str, object]:
                request = {"query": "{ me { name } }"}
                await ws.send(json.dumps({"id": op_id, "type": "subscribe", "payload": request}))
                answer: dict[str, object] = json.loads(await ws.recv())
                return answer

            assert await ask("1") == {
                "id": "1",
                "type": "next",
                "payload": {"data": {"me": {"name": "alice"}}},
            }
            await ws.recv()  # its "complete"
            revoked = await api.data(tokens["alice"], REVOKE, {"id": tablet_id})
            assert revoked["revokeToken"]["__typename"] == "TokenRevoked"
            request = {"query": "{ me { name } }"}
            await ws.send(json.dumps({"id": "2", "type": "subscribe", "payload": request}))
            await ws.wait_closed()  # nothing more is answered on it
            assert ws.close_code == 4401
            assert ws.close_reason == UnauthenticatedError.INVALID


async def test_names_and_labels_with_control_characters_are_refused(
    api: Api, tokens: dict[str, str]
) -> None:
    assert code_of(await api.query(tokens["alice"], CREATE, {"l": "bad\u0000label"})) == (
        "BAD_USER_INPUT"
    )
    create_user = 'mutation { createUser(name: "x\\u001b[31m") { token } }'
    assert code_of(await api.query(tokens["root"], create_user)) == "BAD_USER_INPUT"

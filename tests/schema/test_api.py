"""The GraphQL contract over HTTP: auth, uploads, projects, the edit log and pagination."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from models.db import Database
from tests.helpers.api import APPEND, CREATE, REVERT, Api, new_project, upload


async def test_requests_without_a_valid_token_are_unauthenticated(
    api: Api, tokens: dict[str, str]
) -> None:
    for token in (None, "eg_not-a-real-token", "garbage"):
        body = await api.query(token, "{ me { id } }")
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert body["data"] is None
    body = await api.query(None, "{ opTypes { name } }")
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    me = await api.data(tokens["alice"], "{ me { name isAdmin } }")
    assert me["me"] == {"name": "alice", "isAdmin": False}


async def test_admin_fields_are_forbidden_to_other_users(api: Api, tokens: dict[str, str]) -> None:
    body = await api.query(tokens["alice"], "{ users { name } }")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await api.query(
        tokens["alice"], 'mutation { createUser(name: "mallory", isAdmin: true) { token } }'
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert len((await api.data(tokens["root"], "{ users { name } }"))["users"]) == 3
    created = await api.data(
        tokens["root"], 'mutation { createUser(name: "carol") { token user { name isAdmin } } }'
    )
    token = created["createUser"]["token"]
    assert (await api.data(token, "{ me { name } }"))["me"]["name"] == "carol"


async def test_upload_then_edit_revert_and_read_ops(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    video = (await upload(api, alice, media["clip"]))["video"]
    assert video["width"] == 160 and video["height"] == 120 and video["hasAudio"] is True
    assert video["durationSeconds"] == pytest.approx(2.0, abs=0.1)
    assert video["bytes"] == media["clip"].stat().st_size
    again = await upload(api, alice, media["clip"])
    assert again["deduplicated"] is True and again["video"]["id"] == video["id"]

    created = (await api.data(alice, CREATE, {"v": video["id"], "name": "  Holiday  "}))[
        "createProject"
    ]["project"]
    assert created["name"] == "Holiday" and created["currentVersion"] == 0
    pid = created["id"]

    ops = [{"gaussianBlur": {"radius": 5}}, {"brightness": {"brightness": 20}}]
    first = (await api.data(alice, APPEND, {"p": pid, "ops": ops, "v": 0}))["appendOps"]
    assert first["__typename"] == "OpsAppended"
    assert first["version"]["ops"] == [
        {"type": "gaussian-blur", "params": {"radius": 5.0}},
        {"type": "brightness", "params": {"brightness": 20.0}},
    ]
    second = (
        await api.data(
            alice,
            APPEND,
            {"p": pid, "ops": [{"grayscale": True}, {"flip": {"axis": "HORIZONTAL"}}], "v": 1},
        )
    )["appendOps"]
    assert second["version"]["ops"][1] == {"type": "flip", "params": {"axis": "horizontal"}}

    stale = (await api.data(alice, APPEND, {"p": pid, "ops": [{"mute": True}], "v": 1}))[
        "appendOps"
    ]
    assert stale == {
        "__typename": "VersionConflict",
        "currentVersion": 2,
        "message": stale["message"],
    }

    reverted = (await api.data(alice, REVERT, {"p": pid, "n": 1, "v": 2}))["revertToVersion"]
    assert reverted["version"] == {"number": 3, "parent": 1, "ops": []}

    q = """query($id: ID!) { project(id: $id) { currentVersion
             now: ops { type } at2: ops(upToVersion: 2) { type }
             version(number: 2) { parent ops { type } }
             versions(first: 2) { edges { node { number parent } } pageInfo { hasNextPage endCursor } } } }"""
    project = (await api.data(alice, q, {"id": pid}))["project"]
    assert project["currentVersion"] == 3
    assert [o["type"] for o in project["now"]] == ["gaussian-blur", "brightness"]
    assert [o["type"] for o in project["at2"]] == [
        "gaussian-blur",
        "brightness",
        "grayscale",
        "flip",
    ]
    assert project["version"] == {"parent": 1, "ops": [{"type": "grayscale"}, {"type": "flip"}]}
    assert [e["node"]["number"] for e in project["versions"]["edges"]] == [3, 2]
    assert project["versions"]["pageInfo"]["hasNextPage"] is True
    rest = """query($id: ID!, $after: String) { project(id: $id) {
                versions(first: 10, after: $after) { nodes { number } pageInfo { hasNextPage } } } }"""
    cursor = project["versions"]["pageInfo"]["endCursor"]
    page2 = (await api.data(alice, rest, {"id": pid, "after": cursor}))["project"]["versions"]
    assert page2 == {"nodes": [{"number": 1}, {"number": 0}], "pageInfo": {"hasNextPage": False}}


async def test_invalid_ops_name_the_op_and_field(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    ops = [
        {"trim": {"start": 0, "end": 9}},
        {"crop": {"x": 0, "y": 0, "width": 200, "height": 50}},
        {"speed": {"factor": 2}},
        {"rotate": {"degrees": 45}},
    ]
    result = (await api.data(alice, APPEND, {"p": pid, "ops": ops}))["appendOps"]
    assert result["__typename"] == "InvalidOps"
    # Every problem at once: the frame checks too, not only the params that do not parse.
    assert [(e["index"], e["field"]) for e in result["errors"]] == [
        (0, "end"),
        (1, "width"),
        (3, "degrees"),
    ]
    ops[3] = {"rotate": {"degrees": 90}}
    result = (await api.data(alice, APPEND, {"p": pid, "ops": ops}))["appendOps"]
    assert [(e["index"], e["field"]) for e in result["errors"]] == [(0, "end"), (1, "width")]
    assert "past the end of the video (2 s)" in result["errors"][0]["message"]
    body = await api.query(alice, "{ projects { nodes { currentVersion } } }")
    assert body["data"]["projects"]["nodes"] == [{"currentVersion": 0}]


async def test_an_op_input_takes_exactly_one_key(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    pid = await new_project(api, tokens["alice"], media["clip"])
    body = await api.query(
        tokens["alice"], APPEND, {"p": pid, "ops": [{"mute": True, "grayscale": True}]}
    )
    assert "errors" in body and "exactly one key" in body["errors"][0]["message"]


async def test_op_types_publish_a_json_schema_per_op(api: Api, tokens: dict[str, str]) -> None:
    data = await api.data(
        tokens["alice"], "{ opTypes { name graphqlField description paramsSchema } }"
    )
    by_name = {t["name"]: t for t in data["opTypes"]}
    assert set(by_name) >= {"trim", "gaussian-blur", "text", "concat", "mute"}
    blur = by_name["gaussian-blur"]
    assert blur["graphqlField"] == "gaussianBlur"
    assert blur["paramsSchema"]["properties"]["radius"]["maximum"] == 50


async def test_listing_projects_with_their_videos_is_not_n_plus_one(
    api: Api, tokens: dict[str, str], media: dict[str, Path], db: Database
) -> None:
    alice = tokens["alice"]
    for path in (media["clip"], media["other"], media["silent"]):
        video = (await upload(api, alice, path))["video"]
        for i in range(4):
            await api.data(alice, CREATE, {"v": video["id"], "name": f"p{i}"})
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        q = "{ projects(first: 12) { nodes { name sourceVideo { filename sha256 bytes } } } }"
        data = await api.data(alice, q)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert len(data["projects"]["nodes"]) == 12
    assert {n["sourceVideo"]["filename"] for n in data["projects"]["nodes"]} == {
        "clip.mp4",
        "other.mp4",
        "silent.mp4",
    }
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    # token lookup, the page of projects, one batch of videos, one batch of blobs
    assert len(selects) == 4, selects


async def test_pagination_walks_every_project_once(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    video = (await upload(api, alice, media["clip"]))["video"]
    for i in range(5):
        await api.data(alice, CREATE, {"v": video["id"], "name": f"p{i}"})
    seen: list[str] = []
    after = None
    q = """query($after: String) { projects(first: 2, after: $after) {
             nodes { name } pageInfo { hasNextPage endCursor } } }"""
    while True:
        page = (await api.data(alice, q, {"after": after}))["projects"]
        seen += [n["name"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["p4", "p3", "p2", "p1", "p0"]
    bad = await api.query(alice, '{ projects(after: "nonsense") { nodes { name } } }')
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    big = await api.query(alice, "{ projects(first: 1000) { nodes { name } } }")
    assert "between 0 and 100" in big["errors"][0]["message"]


async def test_delete_video_through_the_api(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    spare = (await upload(api, alice, media["other"]))["video"]["id"]
    used = (
        await api.data(
            alice, "query($p: ID!) { project(id: $p) { sourceVideo { id } } }", {"p": pid}
        )
    )["project"]["sourceVideo"]["id"]
    q = """mutation($id: ID!) { deleteVideo(id: $id) { __typename
             ... on VideoInUse { message projectIds } ... on VideoDeleted { id } } }"""
    in_use = (await api.data(alice, q, {"id": used}))["deleteVideo"]
    assert in_use["__typename"] == "VideoInUse" and in_use["projectIds"] == [pid]
    assert (await api.data(alice, q, {"id": spare}))["deleteVideo"] == {
        "__typename": "VideoDeleted",
        "id": spare,
    }
    assert (await api.data(alice, "query($id: ID!) { video(id: $id) { id } }", {"id": spare}))[
        "video"
    ] is None


async def test_fifty_concurrent_append_ops_requests_all_succeed(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])

    async def one(i: int) -> int:
        ops = [{"brightness": {"brightness": i}}]
        result = (await api.data(alice, APPEND, {"p": pid, "ops": ops}))["appendOps"]
        assert result["__typename"] == "OpsAppended"
        number: int = result["version"]["number"]
        return number

    numbers = await asyncio.gather(*(one(i) for i in range(50)))
    assert sorted(numbers) == list(range(1, 51))

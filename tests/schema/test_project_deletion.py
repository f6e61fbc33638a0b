"""Renaming and deleting a project as its owner would: a deleted project is gone from the API,
its queued renders stop, its videos may go, and its exports are the GC's, pinned ones aside."""

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import col, select

from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from models.tables import Blob, Render, Video, utcnow
from resolvers import ids, lifecycle
from tests.helpers.api import Api, code_of, new_project, upload
from tests.helpers.domain import actor_named
from tests.helpers.gc import exports_on_disk
from tests.helpers.polling import until

RENAME = """mutation($id: ID!, $n: String!) { renameProject(id: $id, name: $n) { __typename
  ... on ProjectRenamed { project { name } } ... on NotFound { message } } }"""
DELETE = """mutation($id: ID!) { deleteProject(id: $id) { __typename
  ... on ProjectDeleted { id } ... on NotFound { message } } }"""
PIN = """mutation($p: ID!, $v: Int!, $on: Boolean!) {
  setExportPinned(projectId: $p, version: $v, pinned: $on) { __typename } }"""
CANDIDATES = "{ gcCandidates(daysOld: 30, keepLatest: 1) { exports { version } } }"


async def test_a_project_is_renamed_by_its_owner_only(
    api: Api, tokens: dict[str, str], db: Database, queue: ArqQueue, media: dict[str, Path]
) -> None:
    store = api.services.store
    assert isinstance(store, MediaStore)
    setup = await exports_on_disk(
        db, queue, store, await actor_named(db, "alice"), media["clip"], count=1
    )
    pid = ids.encode("Project", setup.project_id)
    renamed = await api.data(tokens["alice"], RENAME, {"id": pid, "n": "  Summer   cut "})
    assert renamed["renameProject"]["project"]["name"] == "Summer cut"
    refused = await api.data(tokens["bob"], RENAME, {"id": pid, "n": "mine"})
    assert refused["renameProject"]["__typename"] == "NotFound"
    assert pid in refused["renameProject"]["message"]  # named by the id clients know
    assert code_of(await api.query(tokens["alice"], RENAME, {"id": pid, "n": " "})) == (
        "BAD_USER_INPUT"
    )


async def test_a_deleted_project_leaves_its_exports_to_the_gc_but_keeps_pins(
    api: Api, tokens: dict[str, str], db: Database, queue: ArqQueue, media: dict[str, Path]
) -> None:
    alice, root = tokens["alice"], tokens["root"]
    store = api.services.store
    assert isinstance(store, MediaStore)
    setup = await exports_on_disk(
        db, queue, store, await actor_named(db, "alice"), media["clip"], count=3
    )
    pid = ids.encode("Project", setup.project_id)
    await api.data(alice, PIN, {"p": pid, "v": 1, "on": True})
    # Before: v3 is latest and v1 pinned, so only v2 may go.
    before = (await api.data(root, CANDIDATES))["gcCandidates"]["exports"]
    assert [e["version"] for e in before] == [2]

    assert (await api.data(bob := tokens["bob"], DELETE, {"id": pid}))["deleteProject"][
        "__typename"
    ] == "NotFound"
    assert bob
    assert (await api.data(alice, DELETE, {"id": pid}))["deleteProject"] == {
        "__typename": "ProjectDeleted",
        "id": pid,
    }
    # Gone from the API, for its owner too; no edit lands on it.
    gone = "query($id: ID!) { project(id: $id) { id } projects { nodes { id } } }"
    seen = await api.data(alice, gone, {"id": pid})
    assert seen == {"project": None, "projects": {"nodes": []}}
    append = """mutation($p: ID!) { appendOps(projectId: $p, ops: [{brightness: {brightness: 10}}]) {
      __typename } }"""
    assert (await api.data(alice, append, {"p": pid}))["appendOps"]["__typename"] == "NotFound"
    # Its queued renders were cancelled.
    async with db.read() as session:
        statuses = set(
            (
                await session.exec(
                    select(Render.status).where(Render.project_id == setup.project_id)
                )
            ).all()
        )
    assert "queued" not in statuses and "running" not in statuses
    # Nothing is latest any more: v3 joins v2; v1 stays while pinned, and goes once unpinned.
    after = (await api.data(root, CANDIDATES))["gcCandidates"]["exports"]
    assert sorted(e["version"] for e in after) == [2, 3]
    pin = (await api.data(alice, PIN, {"p": pid, "v": 1, "on": True}))["setExportPinned"]
    assert pin["__typename"] == "NotFound"  # never pinned again
    unpin = (await api.data(alice, PIN, {"p": pid, "v": 1, "on": False}))["setExportPinned"]
    assert unpin["__typename"] == "ExportPinned"
    last = (await api.data(root, CANDIDATES))["gcCandidates"]["exports"]
    assert sorted(e["version"] for e in last) == [1, 2, 3]
    # An admin still sees it, marked deleted, with its history.
    listing = (
        """{ users { name projects { nodes { id deletedAt exports { version pinned } } } } }"""
    )
    mine = next(u for u in (await api.data(root, listing))["users"] if u["name"] == "alice")
    project = next(p for p in mine["projects"]["nodes"] if p["id"] == pid)
    assert project["deletedAt"] is not None
    assert sorted(e["version"] for e in project["exports"]) == [1, 2, 3]


async def test_the_source_of_a_deleted_project_may_be_deleted_and_uploaded_again(
    api: Api, tokens: dict[str, str], db: Database, queue: ArqQueue, media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    video = (await upload(api, alice, media["clip"]))["video"]
    create = """mutation($v: ID!) { createProject(videoId: $v, name: "a") {
      ... on ProjectCreated { project { id } } } }"""
    pid = (await api.data(alice, create, {"v": video["id"]}))["createProject"]["project"]["id"]
    delete_video = """mutation($id: ID!) { deleteVideo(id: $id) { __typename } }"""
    in_use = await api.data(alice, delete_video, {"id": video["id"]})
    assert in_use["deleteVideo"]["__typename"] == "VideoInUse"
    await api.data(alice, DELETE, {"id": pid})
    deleted = await api.data(alice, delete_video, {"id": video["id"]})
    assert deleted["deleteVideo"]["__typename"] == "VideoDeleted"
    assert (await api.data(alice, "query($id: ID!) { video(id: $id) { id } }", video))[
        "video"
    ] is None
    async with db.read() as session:
        blob = (await session.exec(select(Blob).where(Blob.sha256 == video["sha256"]))).one()
        row = await session.get(Video, ids.decode(video["id"], "Video"))
    assert blob.ref_count == 0 and blob.unreferenced_at is not None
    assert row is not None and row.deleted_at is not None  # the deleted project names it
    # The same bytes again: the video is back, referenced once.
    again = await upload(api, alice, media["clip"])
    assert again["video"]["id"] == video["id"] and again["deduplicated"] is False
    async with db.read() as session:
        blob = (await session.exec(select(Blob).where(col(Blob.sha256) == video["sha256"]))).one()
    assert blob.ref_count == 1 and blob.unreferenced_at is None


async def test_the_gc_frees_the_bytes_of_a_video_only_a_deleted_project_names(
    api: Api, tokens: dict[str, str], db: Database, media: dict[str, Path]
) -> None:
    alice, root = tokens["alice"], tokens["root"]
    video = (await upload(api, alice, media["other"]))["video"]
    create = """mutation($v: ID!) { createProject(videoId: $v, name: "a") {
      ... on ProjectCreated { project { id } } } }"""
    pid = (await api.data(alice, create, {"v": video["id"]}))["createProject"]["project"]["id"]
    await api.data(alice, DELETE, {"id": pid})
    proxy = "mutation($p: ID!) { requestProxy(projectId: $p) { __typename } }"
    assert (await api.data(alice, proxy, {"p": pid}))["requestProxy"]["__typename"] == "NotFound"
    await api.data(alice, "mutation($id: ID!) { deleteVideo(id: $id) { __typename } }", video)
    async with db.write() as session:  # the grace period is over
        await session.exec(
            update(Blob)
            .where(col(Blob.sha256) == video["sha256"])
            .values(unreferenced_at=utcnow() - timedelta(days=2))
        )
    store = api.services.store
    key = next(e.key for e in store.listing("videos") if video["sha256"] in e.key)
    run = await api.data(root, "mutation { gcDelete(confirm: true) { id } }")
    query = "query($id: ID!) { gcRun(id: $id) { status error } }"

    async def over() -> dict[str, object] | None:
        found = (await api.data(root, query, {"id": run["gcDelete"]["id"]}))["gcRun"]
        return found if found["status"] != "RUNNING" else None

    assert await until(over, within=30, what="the GC run") == {"status": "DONE", "error": None}
    assert not store.exists(key)  # the bytes are freed; the rows the history names stay
    async with db.read() as session:
        blob = (await session.exec(select(Blob).where(Blob.sha256 == video["sha256"]))).one()
    assert (blob.ref_count, blob.unreferenced_at) == (0, None)
    # Uploaded again: the video is back, and its bytes with it.
    again = await upload(api, alice, media["other"])
    assert again["video"]["id"] == video["id"]
    assert store.exists(key)


async def test_a_render_queued_as_its_project_is_deleted_is_cancelled_not_run(
    api: Api, tokens: dict[str, str], db: Database, media: dict[str, Path]
) -> None:
    pid = await new_project(api, tokens["alice"], media["clip"])
    await api.data(tokens["alice"], DELETE, {"id": pid})
    project_id = ids.decode(pid, "Project")
    async with db.write() as session:  # as if a request had slipped in just before
        await session.exec(
            update(Render)
            .where(col(Render.project_id) == project_id)
            .values(status="queued", error=None, finished_at=None)
        )
        render_id = (
            await session.exec(select(Render.id).where(Render.project_id == project_id))
        ).one()
    assert render_id is not None
    announced: list[str] = []

    async def announce(kind: str, *_: object) -> None:
        announced.append(kind)

    claimed = await lifecycle.claim(db=db, announce=announce, render_id=render_id, lease_s=30)
    assert claimed is None and announced == ["cancelled"]
    async with db.read() as session:
        render = await session.get(Render, render_id)
    assert render is not None and (render.status, render.error, render.attempts) == (
        "cancelled",
        "project deleted",
        0,
    )

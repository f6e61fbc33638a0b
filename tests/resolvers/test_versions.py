"""The edit log: atomic versions, conflicts, validation, revert and effective ops."""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import col, select

from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from models.tables import EditOperation, Project, Version
from resolvers import ids, versions, videos
from resolvers.errors import InvalidOpsError, NotFoundError, VersionConflictError
from resolvers.users import Actor
from tests.helpers.domain import BLUR, BRIGHT, counts, new_project, stage


async def test_append_stores_the_seed_shape_in_canonical_json(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    assert project.current_version == 0 and project.id is not None
    updated, version, proxy = await versions.append_ops(
        db=db,
        queue=queue,
        actor=alice,
        project_id=project.id,
        raw_ops=[BLUR, BRIGHT],
        expected_version=0,
    )
    assert (updated.current_version, version.number, version.parent) == (1, 1, 0)
    # The proxy of the new version is queued in the same transaction, and in Redis.
    assert (proxy.kind, proxy.version, proxy.status, proxy.job_id) == (
        "proxy",
        1,
        "queued",
        f"proxy:{project.id}:1",
    )
    assert await queue.pool.exists(f"arq:job:{proxy.job_id}") == 1
    async with db.read() as s:
        conn = await s.connection()
        sql = text("SELECT type, CAST(params AS TEXT) FROM edit_operations ORDER BY seq")
        raw = (await conn.execute(sql)).all()
    assert [(t, json.loads(p)) for t, p in raw] == [
        ("gaussian-blur", {"radius": 5.0}),
        ("brightness", {"brightness": 20.0}),
    ]
    assert raw[0][1] == '{"radius":5.0}'


async def test_stale_expected_version_conflicts_and_writes_nothing(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    assert project.id is not None
    await versions.append_ops(
        db=db, queue=queue, actor=alice, project_id=project.id, raw_ops=[BLUR], expected_version=0
    )
    before = await counts(db, project.id)
    with pytest.raises(VersionConflictError) as caught:
        await versions.append_ops(
            db=db,
            queue=queue,
            actor=alice,
            project_id=project.id,
            raw_ops=[BRIGHT],
            expected_version=0,
        )
    assert caught.value.current_version == 1
    assert "version 1" in caught.value.message
    assert await counts(db, project.id) == before


async def test_fifty_concurrent_appends_get_versions_one_to_fifty(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    assert project.id is not None
    pid = project.id

    async def one(i: int) -> int:
        _, version, _ = await versions.append_ops(
            db=db,
            queue=queue,
            actor=alice,
            project_id=pid,
            raw_ops=[{"type": "brightness", "params": {"brightness": i}}],
            expected_version=None,
        )
        return version.number

    numbers = await asyncio.gather(*(one(i) for i in range(50)))
    assert sorted(numbers) == list(range(1, 51))
    async with db.read() as s:
        stored = (await s.exec(select(Version.number).where(Version.project_id == pid))).all()
        current = await s.get(Project, pid)
    assert sorted(stored) == list(range(51))
    assert current is not None and current.current_version == 50
    # Each version's parent is the one before it, so the effective list grows by one each time.
    ops_at_50 = await versions.effective_ops(db=db, actor=alice, project_id=pid, up_to=None)
    assert len(ops_at_50) == 50


async def test_revert_appends_a_version_whose_parent_is_the_older_one(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    assert project.id is not None
    pid = project.id
    for op in (BLUR, BRIGHT, {"type": "grayscale", "params": {}}):
        await versions.append_ops(
            db=db, queue=queue, actor=alice, project_id=pid, raw_ops=[op], expected_version=None
        )
    project, reverted, _ = await versions.revert_to_version(
        db=db, queue=queue, actor=alice, project_id=pid, version=1, expected_version=3
    )
    assert (reverted.number, reverted.parent, project.current_version) == (4, 1, 4)
    async with db.read() as s:
        v1 = (await s.exec(select(Version).where(Version.number == 1))).one()
        v3 = (await s.exec(select(Version).where(Version.number == 3))).one()
    # Same effective ops as version 1, so the same content key: the worker reuses its file.
    assert reverted.ops_hash == v1.ops_hash != v3.ops_hash
    effective = await versions.effective_ops(db=db, actor=alice, project_id=pid, up_to=None)
    assert [o.type for o in effective] == ["gaussian-blur"]
    # History is intact: version 3 still rebuilds to all three ops.
    at3 = await versions.effective_ops(db=db, actor=alice, project_id=pid, up_to=3)
    assert [o.type for o in at3] == ["gaussian-blur", "brightness", "grayscale"]
    # Editing after a revert builds on the reverted state.
    await versions.append_ops(
        db=db,
        queue=queue,
        actor=alice,
        project_id=pid,
        raw_ops=[{"type": "mute", "params": {}}],
        expected_version=4,
    )
    at5 = await versions.effective_ops(db=db, actor=alice, project_id=pid, up_to=5)
    assert [o.type for o in at5] == ["gaussian-blur", "mute"]
    with pytest.raises(NotFoundError):
        await versions.revert_to_version(
            db=db, queue=queue, actor=alice, project_id=pid, version=99, expected_version=None
        )
    with pytest.raises(NotFoundError):
        await versions.effective_ops(db=db, actor=alice, project_id=pid, up_to=6)


def problems(exc: InvalidOpsError) -> list[tuple[int, str | None]]:
    return [(e.index, e.field) for e in exc.errors]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([{"type": "trim", "params": {"start": 0.5, "end": 2.5}}], [(0, "end")]),
        (
            [{"type": "crop", "params": {"x": 100, "y": 0, "width": 100, "height": 50}}],
            [(0, "width")],
        ),
        (
            [{"type": "crop", "params": {"x": 0, "y": 0, "width": 100, "height": 121}}],
            [(0, "height")],
        ),
        ([{"type": "speed", "params": {"factor": 10}}], [(0, "factor")]),
        ([{"type": "rotate", "params": {"degrees": 45}}], [(0, "degrees")]),
        ([{"type": "blur", "params": {}}], [(0, "type")]),
        ([{"type": "gaussian-blur", "params": {"radius": 5, "sigma": 1}}], [(0, "sigma")]),
        ([{"type": "text", "params": {"text": "hi", "x": 500}}], [(0, "x")]),
        ([{"type": "fade", "params": {"inSeconds": 1.5, "outSeconds": 1}}], [(0, "outSeconds")]),
        (
            [
                BLUR,
                {"type": "volume", "params": {"gainDb": 50}},
                BRIGHT,
                {"type": "mute", "params": {"enabled": False}},
            ],
            [(1, "gainDb"), (3, "enabled")],
        ),
        # Each op is checked against the frame the ops before it produce.
        (
            [
                {"type": "trim", "params": {"start": 0, "end": 1}},
                {"type": "trim", "params": {"start": 0, "end": 1.5}},
            ],
            [(1, "end")],
        ),
        (
            [
                {"type": "rotate", "params": {"degrees": 90}},
                {"type": "crop", "params": {"x": 0, "y": 0, "width": 150, "height": 20}},
            ],
            [(1, "width")],
        ),
        ([], [(0, None)]),
    ],
)
async def test_invalid_batches_list_every_problem_and_write_nothing(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    media: dict[str, Path],
    raw: list[dict[str, Any]],
    expected: list[tuple[int, str | None]],
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])  # 160x120, 2 s
    assert project.id is not None
    with pytest.raises(InvalidOpsError) as caught:
        await versions.append_ops(
            db=db, queue=queue, actor=alice, project_id=project.id, raw_ops=raw, expected_version=0
        )
    assert problems(caught.value) == expected
    assert all(e.message for e in caught.value.errors)
    assert await counts(db, project.id) == (1, 0)
    async with db.read() as s:
        refreshed = await s.get(Project, project.id)
    assert refreshed is not None and refreshed.current_version == 0


async def test_validation_builds_on_the_ops_already_in_the_log(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    assert project.id is not None
    trim = {"type": "trim", "params": {"start": 0, "end": 1}}
    await versions.append_ops(
        db=db, queue=queue, actor=alice, project_id=project.id, raw_ops=[trim], expected_version=0
    )
    with pytest.raises(InvalidOpsError) as caught:
        await versions.append_ops(
            db=db,
            queue=queue,
            actor=alice,
            project_id=project.id,
            raw_ops=[{"type": "trim", "params": {"start": 0, "end": 1.5}}],
            expected_version=1,
        )
    assert "1 s" in caught.value.errors[0].message


async def test_concat_takes_only_the_callers_own_videos(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    bob: Actor,
    media: dict[str, Path],
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    mine, _ = await videos.upload_video(
        db=db, queue=queue, store=store, actor=alice, staged=stage(store, media["other"])
    )
    theirs, _ = await videos.upload_video(
        db=db, queue=queue, store=store, actor=bob, staged=stage(store, media["silent"])
    )
    assert project.id is not None and mine.id is not None and theirs.id is not None
    foreign = {"type": "concat", "params": {"videoId": ids.encode("Video", theirs.id)}}
    with pytest.raises(InvalidOpsError) as caught:
        await versions.append_ops(
            db=db,
            queue=queue,
            actor=alice,
            project_id=project.id,
            raw_ops=[foreign],
            expected_version=0,
        )
    assert problems(caught.value) == [(0, "videoId")]
    own = {"type": "concat", "params": {"videoId": ids.encode("Video", mine.id)}}
    await versions.append_ops(
        db=db, queue=queue, actor=alice, project_id=project.id, raw_ops=[own], expected_version=0
    )
    # The timeline is now 2 s + 3 s: a trim to 4.5 s fits, one to 5.5 s does not.
    await versions.append_ops(
        db=db,
        queue=queue,
        actor=alice,
        project_id=project.id,
        raw_ops=[{"type": "trim", "params": {"start": 0, "end": 4.5}}],
        expected_version=1,
    )
    async with db.read() as s:
        row = (await s.exec(select(EditOperation).where(EditOperation.type == "concat"))).one()
    assert row.video_id == mine.id


async def test_someone_elses_project_is_not_found(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    bob: Actor,
    media: dict[str, Path],
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    assert project.id is not None
    with pytest.raises(NotFoundError):
        await versions.append_ops(
            db=db,
            queue=queue,
            actor=bob,
            project_id=project.id,
            raw_ops=[BLUR],
            expected_version=None,
        )
    with pytest.raises(NotFoundError):
        await versions.append_ops(
            db=db,
            queue=queue,
            actor=bob,
            project_id=project.id,
            raw_ops=[{"type": "x"}],
            expected_version=None,
        )
    with pytest.raises(NotFoundError):
        await versions.revert_to_version(
            db=db, queue=queue, actor=bob, project_id=project.id, version=0, expected_version=None
        )
    assert await counts(db, project.id) == (1, 0)
    async with db.read() as s:
        assert (
            len((await s.exec(select(Version).where(col(Version.actor_id) == bob.id))).all()) == 0
        )

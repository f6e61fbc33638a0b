"""The render lifecycle: each change is one function, keeps its guards, and is announced once."""

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import StatementError
from sqlmodel import col, select

from jobs.events import EventLog
from jobs.queue import ArqQueue
from models import redis_keys
from models.db import Database
from models.states import GcState, RenderStatus
from models.store import MediaStore
from models.tables import Export, Project, Render
from resolvers import events, lifecycle, renders, versions
from resolvers.presets import export_preset
from resolvers.probe import Probe
from resolvers.users import Actor
from tests.helpers.domain import BLUR, new_project

FACTS = Probe(
    demuxer="mov,mp4,m4a,3gp,3g2,mj2",
    extension="mp4",
    duration=2.0,
    width=160,
    height=120,
    fps=25.0,
    video_codec="h264",
    audio_codec="aac",
)
QUEUED, RUNNING, DONE = RenderStatus.QUEUED, RenderStatus.RUNNING, RenderStatus.DONE
FAILED, CANCELLED = RenderStatus.FAILED, RenderStatus.CANCELLED


async def announced(queue: ArqQueue, project_id: int) -> list[tuple[str, str]]:
    """(event kind, render status) of every event the project's stream holds, oldest first."""
    entries = await queue.pool.xrange(redis_keys.events_stream(project_id))
    decoded = [events.decode(i.decode(), fields[b"e"]) for i, fields in entries]
    return [(e.kind, e.render.status) for e in decoded]


async def row(db: Database, render_id: int | None) -> Render:
    async with db.read() as session:
        found = await session.get(Render, render_id)
    assert found is not None
    return found


@pytest.fixture
async def project(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> Project:
    """A project of the 2 s clip at version 0, its proxy queued."""
    return await new_project(db, queue, store, alice, media["clip"])


async def latest_proxy(db: Database, project_id: int) -> int | None:
    async with db.read() as session:
        stored = await session.get(Project, project_id)
    assert stored is not None
    return stored.latest_proxy_id


async def proxies(db: Database, project_id: int) -> list[Render]:
    async with db.read() as session:
        query = select(Render).where(Render.project_id == project_id).order_by(col(Render.id))
        return list((await session.exec(query)).all())


async def test_each_change_is_announced_with_the_row_as_stored(
    db: Database, queue: ArqQueue, project: Project
) -> None:
    assert project.id is not None
    worker = EventLog(queue.pool).publish
    (proxy,) = await proxies(db, project.id)
    first = await lifecycle.claim(db=db, announce=worker, render_id=proxy.id or 0, lease_s=60)
    assert first is not None and (first.status, first.attempts) == (RUNNING, 1)
    moving = await lifecycle.progress(
        db=db, announce=worker, render=first, fraction=0.5, lease_s=60
    )
    assert moving and (await row(db, proxy.id)).progress == 0.5
    await lifecycle.release(db=db, announce=worker, render=first, note="retrying: a test")
    released = await row(db, proxy.id)
    assert (released.status, released.attempts, released.error) == (QUEUED, 1, "retrying: a test")
    second = await lifecycle.claim(db=db, announce=worker, render_id=proxy.id or 0, lease_s=60)
    assert second is not None and second.attempts == 2
    outcome = await lifecycle.done(
        db=db,
        announce=worker,
        render=second,
        output_key="proxy/1/v0_proxy.mp4",
        size=9,
        facts=FACTS,
    )
    assert outcome == "done"
    finished = await row(db, proxy.id)
    assert (finished.status, finished.bytes, finished.width, finished.progress) == (DONE, 9, 160, 1)
    assert await announced(queue, project.id) == [
        ("queued", QUEUED),
        ("progress", RUNNING),
        ("progress", RUNNING),
        ("queued", QUEUED),
        ("progress", RUNNING),
        ("proxy_ready", DONE),
    ]
    assert await latest_proxy(db, project.id) == proxy.id


async def test_only_a_claimable_render_is_taken_and_only_its_holder_finishes_it(
    db: Database, queue: ArqQueue, project: Project
) -> None:
    assert project.id is not None
    worker = EventLog(queue.pool).publish
    (proxy,) = await proxies(db, project.id)
    render_id = proxy.id or 0
    # A lease that has already run out: the worker holding it counts as dead.
    gone = await lifecycle.claim(db=db, announce=worker, render_id=render_id, lease_s=-1)
    assert gone is not None
    taken = await lifecycle.claim(db=db, announce=worker, render_id=render_id, lease_s=60)
    assert taken is not None and taken.attempts == 2
    assert await lifecycle.claim(db=db, announce=worker, render_id=render_id, lease_s=60) is None
    # The first attempt was taken over: nothing it says changes the render any more.
    assert not await lifecycle.progress(
        db=db, announce=worker, render=gone, fraction=0.9, lease_s=60
    )
    await lifecycle.fail(db=db, announce=worker, render=gone, reason="late")
    await lifecycle.release(db=db, announce=worker, render=gone, note="late")
    superseded = await lifecycle.done(
        db=db, announce=worker, render=gone, output_key="proxy/x.mp4", size=1, facts=FACTS
    )
    assert superseded == "superseded"
    held = await row(db, render_id)
    assert (held.status, held.attempts, held.error, held.output_key) == (RUNNING, 2, None, None)
    # Cancelled while the holder moved its file into place: the render stays cancelled.
    cancelled = await lifecycle.cancel(db=db, announce=queue.announce, render_id=render_id)
    assert cancelled is not None and cancelled.status == CANCELLED
    assert (
        await lifecycle.done(
            db=db, announce=worker, render=taken, output_key="proxy/x.mp4", size=1, facts=FACTS
        )
        == "cancelled"
    )
    assert await lifecycle.claim(db=db, announce=worker, render_id=render_id, lease_s=60) is None
    assert await lifecycle.cancel(db=db, announce=queue.announce, render_id=render_id)
    assert (await row(db, render_id)).status == CANCELLED
    assert await announced(queue, project.id) == [
        ("queued", QUEUED),
        ("progress", RUNNING),
        ("progress", RUNNING),
        ("cancelled", CANCELLED),
    ]


async def test_the_reconciler_never_fails_a_render_claimed_since_it_read_it(
    db: Database, queue: ArqQueue, project: Project
) -> None:
    assert project.id is not None
    worker = EventLog(queue.pool).publish
    (read,) = await proxies(db, project.id)
    claimed = await lifecycle.claim(db=db, announce=worker, render_id=read.id or 0, lease_s=60)
    assert claimed is not None
    await lifecycle.fail(db=db, announce=worker, render=read, reason="gave up after 3 attempts")
    assert (await row(db, read.id)).status == RUNNING
    await lifecycle.fail(db=db, announce=worker, render=claimed, reason="ffmpeg said no")
    failed = await row(db, read.id)
    assert (failed.status, failed.error, failed.lease_until) == (FAILED, "ffmpeg said no", None)
    assert [kind for kind, _ in await announced(queue, project.id)] == [
        "queued",
        "progress",
        "failed",
    ]


async def test_the_latest_proxy_only_moves_forward(
    db: Database, queue: ArqQueue, alice: Actor, project: Project
) -> None:
    assert project.id is not None
    await versions.append_ops(
        db=db, queue=queue, actor=alice, project_id=project.id, raw_ops=[BLUR], expected_version=0
    )
    worker = EventLog(queue.pool).publish
    older, newer = await proxies(db, project.id)
    for proxy in (newer, older):
        claimed = await lifecycle.claim(db=db, announce=worker, render_id=proxy.id or 0, lease_s=60)
        assert claimed is not None
        key = renders.output_key(proxy.kind, project.id, proxy.version)
        finished = await lifecycle.done(
            db=db, announce=worker, render=claimed, output_key=key, size=1, facts=FACTS
        )
        assert finished == "done"
    assert await latest_proxy(db, project.id) == newer.id


async def test_the_latest_export_is_the_newest_version_whatever_finishes_first(
    db: Database, queue: ArqQueue, alice: Actor, project: Project
) -> None:
    assert project.id is not None
    for _ in range(2):
        await versions.append_ops(
            db=db,
            queue=queue,
            actor=alice,
            project_id=project.id,
            raw_ops=[BLUR],
            expected_version=None,
        )
    preset = export_preset(crf=20, x264_preset="ultrafast")
    requested = [
        await renders.request_export(
            db=db, queue=queue, actor=alice, project_id=project.id, version=n, preset=preset
        )
        for n in (1, 2)
    ]
    worker = EventLog(queue.pool).publish
    for _, render in reversed(requested):  # v2 finishes first, then v1
        claimed = await lifecycle.claim(
            db=db, announce=worker, render_id=render.id or 0, lease_s=60
        )
        assert claimed is not None
        key = renders.output_key(render.kind, project.id, render.version)
        assert (
            await lifecycle.done(
                db=db, announce=worker, render=claimed, output_key=key, size=1, facts=FACTS
            )
            == "done"
        )
    async with db.read() as session:
        stored = await session.get(Project, project.id)
    assert stored is not None and stored.latest_export_id == requested[1][0].id


async def test_states_are_stored_as_text_and_read_back_as_the_one_enum(
    db: Database, queue: ArqQueue, alice: Actor, project: Project
) -> None:
    assert project.id is not None
    preset = export_preset(crf=20, x264_preset="ultrafast")
    export, render = await renders.request_export(
        db=db, queue=queue, actor=alice, project_id=project.id, version=None, preset=preset
    )
    async with db.engine.connect() as conn:
        query = text(
            "SELECT r.status, e.gc_state FROM renders r JOIN exports e ON e.render_id = r.id"
        )
        assert (await conn.execute(query)).one() == ("queued", "none")
    assert type((await row(db, render.id)).status) is RenderStatus
    async with db.read() as session:
        again = await session.get(Export, export.id)
    assert again is not None and type(again.gc_state) is GcState
    # A state outside the vocabulary is refused where it is written.
    with pytest.raises(StatementError, match="paused"):
        await write_status(db, render.id, "paused")
    assert (await row(db, render.id)).status == QUEUED


async def write_status(db: Database, render_id: int | None, status: str) -> None:
    async with db.write() as session:
        stored = await session.get(Render, render_id)
        assert stored is not None
        stored.status = status  # type: ignore[assignment]  # a plain string, as a mistake would
        session.add(stored)

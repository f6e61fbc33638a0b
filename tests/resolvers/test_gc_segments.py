"""Proxy segments under the GC: the ones no shown proxy lists and nobody used for a week go
with a confirmed delete; the ones a render lists meanwhile stay; a lost one is made again."""

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from jobs.queue import ArqQueue
from jobs.runtime import Runtime
from models import keys
from models.db import Database
from models.store import MediaStore
from models.tables import PlanSegment, Project, Render, Segment, utcnow
from resolvers import gc, gc_segments, versions
from resolvers.users import Actor
from tests.helpers.domain import new_project
from tests.helpers.media import make_video
from tests.helpers.render_job import append, output_of, runtime


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("gcseg") / "clip.mp4", seconds=4, size="160x90")


async def keys_of(db: Database, render: Render) -> set[str]:
    async with db.read() as session:
        return set(
            (
                await session.exec(
                    select(PlanSegment.segment_key).where(PlanSegment.render_id == render.id)
                )
            ).all()
        )


async def two_versions(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, clip: Path
) -> tuple[Runtime, Project, Render, Render]:
    """A project whose version 0 and version 1 (grayscale) have their proxies rendered."""
    rt = runtime(db, queue, store)
    project = await new_project(db, queue, store, alice, clip)
    async with db.read() as session:
        first = (await session.exec(select(Render))).one()
    await output_of(rt, first)
    _, gray = await append(rt, queue, alice, project, [{"type": "grayscale", "params": {}}])
    await output_of(rt, gray)
    return rt, project, first, gray


async def age_all(db: Database, days: int) -> None:
    async with db.write() as session:
        await session.exec(update(Segment).values(used_at=utcnow() - timedelta(days=days)))


async def test_unused_segments_go_with_a_confirmed_delete_and_shown_ones_stay(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, clip: Path
) -> None:
    rt, project, first, gray = await two_versions(db, queue, store, alice, clip)
    old, shown = await keys_of(db, first), await keys_of(db, gray)
    assert len(old) == len(shown) == 2 and not old & shown
    # A week old, but used a moment ago: nothing is reclaimable yet.
    assert await gc_segments.reclaimable(db=db, days_old=7) == gc_segments.Reclaimable(0, 0)
    await age_all(db, 8)
    found = await gc_segments.reclaimable(db=db, days_old=7)
    assert found.count == 2 and found.bytes > 0
    with pytest.raises(Exception, match="confirm"):
        await gc.delete(db=db, store=store, actor=None, days_in_archive=30, confirm=False)
    outcome = await gc.delete(db=db, store=store, actor=None, days_in_archive=30, confirm=True)
    assert outcome.tally.bytes_freed >= found.bytes
    assert not any(store.path(keys.segment(k)).exists() for k in old)
    assert all(store.path(keys.segment(k)).exists() for k in shown)
    # The current version's playlist is whole; an old version asked for again is made again.
    assert project.id is not None
    _, _, back = await versions.revert_to_version(
        db=db, queue=queue, actor=alice, project_id=project.id, version=0, expected_version=None
    )
    await output_of(rt, back)
    assert await keys_of(db, back) == old
    assert all(store.path(keys.segment(k)).exists() for k in old)


async def test_a_segment_a_render_lists_while_the_gc_runs_stays(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, clip: Path
) -> None:
    _, _, first, _ = await two_versions(db, queue, store, alice, clip)
    old = sorted(await keys_of(db, first))
    await age_all(db, 8)

    async def a_render_lists_one(where: str) -> None:
        # Between the GC's look and its delete, a render plans a proxy that lists old[0]
        # (what jobs.proxy does in the transaction that reads which segments are stored).
        if where == "segments listed":
            async with db.write() as session:
                await session.exec(
                    update(Segment).where(col(Segment.key) == old[0]).values(used_at=utcnow())
                )

    deleted, _ = await gc_segments.reclaim(
        db=db, store=store, days_old=7, checkpoint=a_render_lists_one
    )
    assert deleted == 1
    assert store.path(keys.segment(old[0])).exists()
    assert not store.path(keys.segment(old[1])).exists()
    async with db.read() as session:
        assert await session.get(Segment, old[0]) is not None
        assert await session.get(Segment, old[1]) is None

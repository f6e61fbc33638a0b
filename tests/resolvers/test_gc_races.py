"""The GC against ordinary user actions, interleaved at every step boundary and raced for
real: a pin or a re-requested export that lands mid-run always wins, and no state outlives
its bytes."""

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from models.tables import Blob, Export, GcLock, Project, Render, Video, utcnow
from resolvers import exports, gc, gc_runs, projects, renders, videos
from resolvers.errors import GcBusyError, MediaMissingError, NotFoundError
from resolvers.presets import export_preset
from resolvers.users import Actor
from tests.helpers.domain import stage
from tests.helpers.gc import consistent, exports_on_disk, finish_export

PRESET = export_preset(crf=20, x264_preset="fast")
STEPS = ["converge listed", "listed", "recorded", "settled"]


async def row(db: Database, project_id: int, version: int) -> tuple[Export, Render, Project]:
    async with db.read() as s:
        found = (
            await s.exec(
                select(Export, Render, Project)
                .join(Render, col(Render.id) == Export.render_id)
                .join(Project, col(Project.id) == Export.project_id)
                .where(Export.project_id == project_id, Export.version == version)
            )
        ).one()
    return found


async def deleted_v1_archived_rest(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, source: Path
) -> int:
    """v1 deleted, v2 archived (old enough to delete; a crash left its files unsettled, so
    converge has work to do), v3 marked, v4 latest."""
    setup = await exports_on_disk(db, queue, store, alice, source, count=4)
    await gc.mark(db=db, actor=alice, days_old=30, keep_latest=1)
    await gc.archive(db=db, store=store, actor=alice)
    async with db.write() as s:
        await s.exec(
            update(Export)
            .where(col(Export.version) == 1)
            .values(archived_at=utcnow() - timedelta(days=31))
        )
    await gc.delete(db=db, store=store, actor=alice, days_in_archive=30, confirm=True)
    async with db.write() as s:
        await s.exec(
            update(Export)
            .where(col(Export.gc_state) == "archived")
            .values(archived_at=utcnow() - timedelta(days=31), files_pending=True)
        )
    await gc.restore(db=db, store=store, actor=alice, export_id=setup.exports[3].id or 0)
    async with db.write() as s:
        await s.exec(update(Export).where(col(Export.version) == 3).values(gc_state="marked"))
    return setup.project_id


@pytest.mark.both_storages  # a bucket's archive is a copy, then a delete: the same guarantees
@pytest.mark.parametrize("stage_name", ["archive", "delete"])
@pytest.mark.parametrize("step", STEPS)
async def test_a_pin_and_a_re_export_at_any_step_boundary_win(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    media: dict[str, Path],
    stage_name: str,
    step: str,
) -> None:
    project_id = await deleted_v1_archived_rest(db, queue, store, alice, media["clip"])
    v2, _, _ = await row(db, project_id, 2)
    _, v3_render, _ = await row(db, project_id, 3)
    original = {
        2: store.read_bytes(gc.archive_key(v2)),
        3: store.read_bytes(v3_render.output_key or ""),
    }
    pinned: dict[int, bool] = {}

    async def user_acts(where: str) -> None:
        if where != step or pinned:
            return
        # The user asks again for the deleted v1: it renders again (v4 stays the latest).
        export, _ = await renders.request_export(
            db=db, queue=queue, actor=alice, project_id=project_id, version=1, preset=PRESET
        )
        await finish_export(db, queue, store, export, data=b"v1 rendered again")
        # And pins the archived v2 and the marked v3 (too late, a pin finds it deleted).
        for version in (2, 3):
            try:
                await exports.set_pinned(
                    db=db,
                    store=store,
                    actor=alice,
                    project_id=project_id,
                    version=version,
                    pinned=True,
                )
                pinned[version] = True
            except NotFoundError:
                pinned[version] = False

    if stage_name == "archive":
        await gc.archive(db=db, store=store, actor=alice, checkpoint=user_acts)
    else:
        await gc.delete(
            db=db, store=store, actor=alice, days_in_archive=30, confirm=True, checkpoint=user_acts
        )
    assert pinned, f"the {stage_name} stage never reached {step!r}"

    v1, v1_render, project = await row(db, project_id, 1)
    assert (v1.gc_state, v1_render.status) == ("none", "done")
    v4, v4_render, _ = await row(db, project_id, 4)
    assert project.latest_export_id == v4.id and store.exists(v4_render.output_key or "")
    assert v1_render.output_key is not None
    assert store.read_bytes(v1_render.output_key) == b"v1 rendered again"
    for version, kept in pinned.items():
        export, render, _ = await row(db, project_id, version)
        if kept:
            assert (export.gc_state, export.pinned) == ("none", True)
            assert render.output_key is not None
            assert store.read_bytes(render.output_key) == original[version]
        else:
            assert export.gc_state == "deleted"
    await gc.converge(db=db, store=store)
    await consistent(db, store)


@pytest.mark.both_storages
async def test_restore_refuses_when_the_archived_file_is_gone(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    setup = await exports_on_disk(db, queue, store, alice, media["clip"], count=2)
    await gc.mark(db=db, actor=alice, days_old=30, keep_latest=1)
    await gc.archive(db=db, store=store, actor=alice)
    v1 = setup.exports[1]
    assert v1.id is not None
    store.remove(gc.archive_key(v1))  # lost outside editgraph (a disk, an operator)
    with pytest.raises(MediaMissingError, match="nothing was changed"):
        await gc.restore(db=db, store=store, actor=alice, export_id=v1.id)
    with pytest.raises(MediaMissingError):
        await exports.set_pinned(
            db=db, store=store, actor=alice, project_id=setup.project_id, version=1, pinned=True
        )
    export, _, _ = await row(db, setup.project_id, 1)
    assert (export.gc_state, export.pinned) == ("archived", False)


async def test_one_gc_run_at_a_time_and_a_dead_run_frees_the_lock(db: Database) -> None:
    async def take(holder: str) -> int:
        run = await gc_runs.acquire(db=db, action="archive", actor=None, holder=holder, params={})
        assert run.id is not None
        return run.id

    results = await asyncio.gather(*(take(f"cli {n}") for n in range(6)), return_exceptions=True)
    won = [r for r in results if isinstance(r, int)]
    busy = [r for r in results if isinstance(r, GcBusyError)]
    assert len(won) == 1 and len(busy) == 5, results
    assert busy[0].run_id == won[0] and busy[0].holder.startswith("cli ")
    assert busy[0].extensions["code"] == "GC_BUSY"
    # Its process died: once the lease runs out the lock is free, and the dead run says so.
    async with db.write() as s:
        await s.exec(update(GcLock).values(lease_until=utcnow() - timedelta(seconds=1)))
    await take("cli again")
    dead = await gc_runs.get_run(db=db, run_id=won[0])
    assert dead.status == gc_runs.INTERRUPTED and dead.finished_at is not None


async def test_concurrent_deletes_of_videos_on_one_blob_keep_its_count(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    bob: Actor,
    media: dict[str, Path],
) -> None:
    mine, _ = await videos.upload_video(
        db=db, store=store, queue=queue, actor=alice, staged=stage(store, media["clip"])
    )
    theirs, _ = await videos.upload_video(
        db=db, store=store, queue=queue, actor=bob, staged=stage(store, media["clip"])
    )
    assert mine.id is not None and theirs.id is not None
    outcomes = await asyncio.gather(
        *(videos.delete_video(db=db, actor=alice, video_id=mine.id) for _ in range(8)),
        return_exceptions=True,
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1, outcomes
    assert all(isinstance(o, NotFoundError) for o in outcomes if isinstance(o, BaseException))
    async with db.read() as s:
        blob = (await s.exec(select(Blob).where(Blob.id == theirs.blob_id))).one()
        assert await s.get(Video, theirs.id) is not None
    assert (blob.ref_count, blob.unreferenced_at) == (1, None)
    await gc.delete(db=db, store=store, actor=None, days_in_archive=0, confirm=True, blob_grace_s=0)
    assert (await videos.get_video(db=db, actor=bob, video_id=theirs.id)).id == theirs.id


def _in_thread(make: Callable[[], Awaitable[None]]) -> threading.Thread:
    thread = threading.Thread(target=lambda: asyncio.run(make()))  # type: ignore[arg-type]
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.both_storages
async def test_gc_stages_racing_each_other_and_users_lose_nothing(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    """Two GC stages run at once (as two admins without the lock would), in their own
    threads with their own connections, while the user re-exports and pins."""
    project_id = await deleted_v1_archived_rest(db, queue, store, alice, media["clip"])
    stop = threading.Event()
    failures: list[BaseException] = []

    def looping(stage_name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            other = Database(db.url)
            try:
                while not stop.is_set():
                    if stage_name == "archive":
                        await gc.archive(db=other, store=store, actor=None)
                    else:
                        await gc.delete(
                            db=other, store=store, actor=None, days_in_archive=30, confirm=True
                        )
            except BaseException as exc:
                failures.append(exc)
            finally:
                await other.dispose()

        return run

    threads = [_in_thread(looping("archive")), _in_thread(looping("delete"))]
    try:
        for round_ in range(5):
            export, _ = await renders.request_export(
                db=db, queue=queue, actor=alice, project_id=project_id, version=1, preset=PRESET
            )
            if export.gc_state == "none" and (await row(db, project_id, 1))[1].status != "done":
                await finish_export(db, queue, store, export, data=b"v1 again %d" % round_)
            for version in (2, 3):
                with contextlib.suppress(NotFoundError):  # deleted before the pin arrived
                    await exports.set_pinned(
                        db=db,
                        store=store,
                        actor=alice,
                        project_id=project_id,
                        version=version,
                        pinned=round_ % 2 == 0,
                    )
            for version in (1, 2, 3, 4):
                export, render, project = await row(db, project_id, version)
                if export.pinned or project.latest_export_id == export.id:
                    assert export.gc_state == "none", export
                    assert render.output_key and store.exists(render.output_key), export
            # Mark again (all but the newest of the project, unpinned), so the racing stages
            # have something to move next round.
            await gc.mark(db=db, actor=alice, days_old=0, keep_latest=1)
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not failures, failures
    await gc.converge(db=db, store=store)
    await consistent(db, store)


@pytest.mark.parametrize("stage_name", ["archive", "delete"])
@pytest.mark.parametrize("step", STEPS)
async def test_deleting_the_project_at_any_step_boundary_keeps_its_pinned_export(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    media: dict[str, Path],
    stage_name: str,
    step: str,
) -> None:
    project_id = await deleted_v1_archived_rest(db, queue, store, alice, media["clip"])
    await exports.set_pinned(
        db=db, store=store, actor=alice, project_id=project_id, version=4, pinned=True
    )
    _, v4_render, _ = await row(db, project_id, 4)
    kept = store.read_bytes(v4_render.output_key or "")
    deleted: list[str] = []

    async def user_acts(where: str) -> None:
        if where == step and not deleted:
            await projects.delete_project(db=db, queue=queue, actor=alice, project_id=project_id)
            deleted.append(where)

    if stage_name == "archive":
        await gc.archive(db=db, store=store, actor=alice, checkpoint=user_acts)
    else:
        await gc.delete(
            db=db, store=store, actor=alice, days_in_archive=30, confirm=True, checkpoint=user_acts
        )
    assert deleted, f"the {stage_name} stage never reached {step!r}"
    # Then everything the GC may take, taken: the pinned export of the deleted project stays.
    await gc.full_cycle(
        db=db, store=store, actor=alice, days_old=0, keep_latest=0, days_in_archive=0, confirm=True
    )
    await gc.converge(db=db, store=store)
    v4, v4_render, project = await row(db, project_id, 4)
    assert project.deleted_at is not None and project.latest_export_id is None
    assert (v4.gc_state, v4.pinned) == ("none", True)
    assert store.read_bytes(v4_render.output_key or "") == kept
    v3, _, _ = await row(db, project_id, 3)
    assert v3.gc_state == "deleted"  # nothing else of it is kept
    await consistent(db, store)

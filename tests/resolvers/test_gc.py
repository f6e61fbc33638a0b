"""The safe GC: protected exports never move, stages are explicit, crashes converge."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from models.tables import Export, GcAudit, Project, Render, Video, utcnow
from resolvers import exports, gc, gc_policy, renders
from resolvers.errors import ConfirmationRequiredError, NotFoundError
from resolvers.users import Actor
from tests.helpers.domain import new_project, stage
from tests.helpers.gc import consistent, exports_on_disk, on_disk, states

# Every stage, on files under the media root and on objects in a bucket.
pytestmark = pytest.mark.both_storages


async def test_mark_flags_old_unprotected_exports_and_moves_nothing(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    setup = await exports_on_disk(db, queue, store, alice, media["clip"])
    await exports.set_pinned(
        db=db, store=store, actor=alice, project_id=setup.project_id, version=2, pinned=True
    )
    rows, count, size = await gc_policy.candidates(db=db, days_old=30, keep_latest=1)
    assert sorted((e.version, b) for e, b in rows) == [(1, 800), (3, 800)]
    assert (count, size) == (2, 1600)
    assert (await gc_policy.candidates(db=db, days_old=60, keep_latest=1))[1] == 0
    # Old proxies of versions that are no longer current are reported with their bytes.
    async with db.write() as session:
        await session.exec(
            update(Render)
            .where(col(Render.kind) == "proxy")
            .values(status="done", bytes=100, created_at=utcnow() - timedelta(days=40))
        )
    assert await gc_policy.stale_proxies(db=db, days_old=30) == (4, 400)  # v0..v3, not v4 (current)
    before = on_disk(store)
    outcome = await gc.mark(db=db, actor=alice, days_old=30, keep_latest=1)
    assert (outcome.marked, outcome.tally.bytes_marked) == (2, 1600)
    assert await states(db) == {1: "marked", 2: "none", 3: "marked", 4: "none"}
    assert on_disk(store) == before
    async with db.read() as s:
        audit = (await s.exec(select(GcAudit).where(GcAudit.action == "mark"))).all()
    assert sorted(a.export_id or 0 for a in audit) == sorted(
        e.id or 0 for e in (setup.exports[1], setup.exports[3])
    )
    assert all(a.actor_id == alice.id for a in audit)


async def test_archive_rechecks_pins_and_latest_then_delete_needs_confirm_and_age(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    setup = await exports_on_disk(db, queue, store, alice, media["clip"])
    await gc.mark(db=db, actor=alice, days_old=30, keep_latest=1)  # v1, v2, v3
    # Between mark and archive: v2 is pinned and v3 becomes the latest export. Both win.
    await exports.set_pinned(
        db=db, store=store, actor=alice, project_id=setup.project_id, version=2, pinned=True
    )
    async with db.write() as s:
        await s.exec(update(Project).values(latest_export_id=setup.exports[3].id))
    archived = await gc.archive(db=db, store=store, actor=alice)
    assert [e.version for e in archived.exports] == [1]
    assert await states(db) == {1: "archived", 2: "none", 3: "none", 4: "none"}
    assert store.exists(gc.archive_key(setup.exports[1]))
    await consistent(db, store)

    with pytest.raises(ConfirmationRequiredError):
        await gc.delete(db=db, store=store, actor=alice, days_in_archive=30, confirm=False)
    assert (
        await gc.delete(db=db, store=store, actor=alice, days_in_archive=30, confirm=True)
    ).deleted == 0
    async with db.write() as s:
        await s.exec(
            update(Export)
            .values(archived_at=utcnow() - timedelta(days=31))
            .where(col(Export.gc_state) == "archived")
        )
    deleted = await gc.delete(db=db, store=store, actor=alice, days_in_archive=30, confirm=True)
    assert (deleted.deleted, deleted.bytes_freed) == (1, 800)
    assert await states(db) == {1: "deleted", 2: "none", 3: "none", 4: "none"}
    await consistent(db, store)


async def test_restore_and_pinning_an_archived_export_bring_it_back(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    setup = await exports_on_disk(db, queue, store, alice, media["clip"])
    await gc.mark(db=db, actor=alice, days_old=30, keep_latest=1)
    await gc.archive(db=db, store=store, actor=alice)
    assert await states(db) == {1: "archived", 2: "archived", 3: "archived", 4: "none"}
    restored = await gc.restore(db=db, store=store, actor=alice, export_id=setup.exports[1].id or 0)
    assert restored.gc_state == "none"
    pinned = await exports.set_pinned(
        db=db, store=store, actor=alice, project_id=setup.project_id, version=2, pinned=True
    )
    assert (pinned.gc_state, pinned.pinned) == ("none", True)
    await consistent(db, store)
    with pytest.raises(NotFoundError):
        await gc.restore(db=db, store=store, actor=alice, export_id=setup.exports[1].id or 0)


@pytest.mark.parametrize(
    ("stage", "step"),
    [
        ("archive", "recorded"),
        ("archive", "settled"),
        ("delete", "recorded"),
        ("delete", "settled"),
        ("restore", "recorded"),
        ("restore", "settled"),
    ],
)
async def test_a_crash_at_any_step_converges(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    media: dict[str, Path],
    stage: str,
    step: str,
) -> None:
    setup = await exports_on_disk(db, queue, store, alice, media["clip"], count=2)

    class Crash(Exception):
        pass

    async def crash_at(where: str) -> None:
        if where == step:
            raise Crash(where)

    await gc.mark(db=db, actor=alice, days_old=30, keep_latest=1)
    if stage == "archive":
        with pytest.raises(Crash):
            await gc.archive(db=db, store=store, actor=alice, checkpoint=crash_at)
    else:
        await gc.archive(db=db, store=store, actor=alice)
        async with db.write() as s:
            await s.exec(
                update(Export)
                .values(archived_at=utcnow() - timedelta(days=31))
                .where(col(Export.gc_state) == "archived")
            )
        attempt = (
            gc.delete(
                db=db,
                store=store,
                actor=alice,
                days_in_archive=30,
                confirm=True,
                checkpoint=crash_at,
            )
            if stage == "delete"
            else gc.restore(
                db=db,
                store=store,
                actor=alice,
                export_id=setup.exports[1].id or 0,
                checkpoint=crash_at,
            )
        )
        with pytest.raises(Crash):
            await attempt
    await gc.converge(db=db, store=store)
    await consistent(db, store)
    # And the next run finishes the job.
    await gc.archive(db=db, store=store, actor=alice)
    await consistent(db, store)
    assert store.exists(renders.output_key("export", setup.project_id, 2))  # the latest


async def test_unused_videos_and_storage_usage(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    from resolvers import videos

    await new_project(db, queue, store, alice, media["clip"])
    spare, _ = await videos.upload_video(
        db=db, store=store, queue=queue, actor=alice, staged=stage(store, media["other"])
    )
    assert [v.id for v in await gc_policy.unused_videos(db=db)] == [spare.id]
    usage = gc_policy.storage_usage(store)
    assert usage["videos"] == (media["clip"].stat().st_size + media["other"].stat().st_size, 2)
    assert usage["archive"] == (0, 0)


async def test_source_bytes_go_only_unreferenced_and_after_the_grace_period(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    from resolvers import videos

    video, _ = await videos.upload_video(
        db=db, store=store, queue=queue, actor=alice, staged=stage(store, media["other"])
    )
    assert video.id is not None
    await videos.delete_video(db=db, actor=alice, video_id=video.id)
    (original,) = [e.key for e in store.listing("videos")]
    # Unreferenced, but within the grace period: kept.
    await gc.delete(db=db, store=store, actor=alice, days_in_archive=30, confirm=True)
    assert store.exists(original)
    # Past the grace period, an upload of the same bytes races the GC, right after the GC
    # dropped the row and before it removed the file: the upload's file survives.
    reuploaded: list[Video] = []

    async def upload_meanwhile(step: str) -> None:
        if step == "recorded" and not reuploaded:
            again, _ = await videos.upload_video(
                db=db, store=store, queue=queue, actor=alice, staged=stage(store, media["other"])
            )
            reuploaded.append(again)

    outcome = await gc.delete(
        db=db,
        store=store,
        actor=alice,
        days_in_archive=30,
        confirm=True,
        blob_grace_s=0,
        checkpoint=upload_meanwhile,
    )
    assert outcome.bytes_freed == 0  # the upload that raced it took the bytes back
    assert reuploaded and store.exists(original)
    assert store.read_bytes(original) == media["other"].read_bytes()
    assert await videos.get_video(db=db, actor=alice, video_id=reuploaded[0].id or 0)
    # Once nothing references it again and the grace period passes, it goes for good.
    await videos.delete_video(db=db, actor=alice, video_id=reuploaded[0].id or 0)
    gone = await gc.delete(
        db=db, store=store, actor=alice, days_in_archive=30, confirm=True, blob_grace_s=0
    )
    assert not store.exists(original)
    assert gone.bytes_freed == media["other"].stat().st_size
    async with db.read() as s:
        audit = (await s.exec(select(GcAudit).where(GcAudit.action == "delete-source"))).all()
    assert [a.bytes for a in audit] == [media["other"].stat().st_size] * 2


def disk_bytes(store: MediaStore) -> int:
    """Bytes the media root holds, each file once however many names it has."""
    return sum(size for size, _ in gc_policy.storage_usage(store).values())


async def test_bytes_are_counted_as_the_disk_sees_them(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    media: dict[str, Path],
    storage: str,
) -> None:
    if storage != "local":
        pytest.skip("hard links are a disk's; every object in a bucket is its own")
    setup = await exports_on_disk(db, queue, store, alice, media["clip"], count=4)
    # v2 shares v1's file, as a revert's export reuses an equal render through a hard link.
    v1 = store.path(renders.output_key("export", setup.project_id, 1))
    v2 = store.path(renders.output_key("export", setup.project_id, 2))
    v2.unlink()
    os.link(v1, v2)
    usage = gc_policy.storage_usage(store)
    assert usage["export"] == (3 * 800, 3)  # four names, three files
    before = disk_bytes(store)
    # Keep v3 (and the latest, v4): v1 and v2 are archived and deleted in the same cycle.
    await exports.set_pinned(
        db=db, store=store, actor=alice, project_id=setup.project_id, version=3, pinned=True
    )
    cycle = await gc.full_cycle(
        db=db,
        store=store,
        actor=alice,
        days_old=30,
        keep_latest=1,
        days_in_archive=0,
        confirm=True,
    )
    assert (cycle.marked, cycle.archived, cycle.deleted) == (2, 2, 2)
    assert sorted(e.version for e in cycle.exports) == [1, 2]  # each listed once
    assert cycle.tally.bytes_moved == 1600  # both exports got an archive name
    assert cycle.bytes_freed == 800 == before - disk_bytes(store)

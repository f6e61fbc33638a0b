"""The garbage collector: mark, archive, delete (and restore), never on its own.

The latest export of a project and every pinned export are protected, and that is checked
again at every stage, inside the transaction that changes the row, with the row locked. Files
move only in ``gc_files.settle``, under the row's lock, after the new state is committed; an
interrupted step is finished by ``converge()``. One run at a time holds the lock in
``gc_runs``.
"""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Integer, bindparam, func, insert, literal, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import Database
from models.states import GcState
from models.store import MediaStore
from models.tables import Export, GcAudit, Render, UTCDateTime, utcnow
from resolvers import gc_blobs, gc_policy, gc_proxies, gc_segments, ids
from resolvers.errors import ConfirmationRequiredError, MediaMissingError, NotFoundError
from resolvers.gc_files import (
    ARCHIVED,
    BATCH,
    DELETED,
    MARKED,
    NONE,
    Checkpoint,
    Freed,
    Held,
    archive_key,
    converge,
    has_bytes,
    lock,
    no_fault,
    off_loop,
    settle_locked,
)
from resolvers.gc_runs import Reporter, Tally
from resolvers.users import Actor

__all__ = ["ARCHIVED", "DELETED", "MARKED", "NONE", "archive_key", "converge"]

log = logging.getLogger(__name__)
MAX_LISTED = 100  # exports an outcome lists (the audit table has every one)
PAUSE_S = 0.02  # between batches


@dataclass
class GcOutcome:
    """What one GC action did."""

    action: str
    tally: Tally = field(default_factory=Tally)
    exports: list[Export] = field(default_factory=list)  # the first MAX_LISTED changed
    listed: list[int] = field(default_factory=list)  # their ids, as the stage goes

    def list(self, export_id: int) -> None:
        """Remember an export the action changed (the audit table has every one)."""
        if len(self.listed) < MAX_LISTED:
            self.listed.append(export_id)

    async def load(self, db: Database) -> None:
        """Read the listed exports, as they are now, once the stage is over."""
        async with db.read() as session:
            rows = await session.exec(
                select(Export).where(col(Export.id).in_(self.listed)).order_by(col(Export.id))
            )
            self.exports = list(rows.all())

    @property
    def marked(self) -> int:
        """Exports flagged MARKED."""
        return self.tally.marked

    @property
    def archived(self) -> int:
        """Exports moved to archive/."""
        return self.tally.archived

    @property
    def deleted(self) -> int:
        """Exports deleted for good."""
        return self.tally.deleted

    @property
    def bytes_freed(self) -> int:
        """Bytes whose last name went: what the disk got back."""
        return self.tally.bytes_freed


def _tally(reporter: Reporter | None, shared: Tally | None) -> Tally:
    """Where a stage counts: its run's row, a full cycle's shared tally, or its own."""
    if reporter is not None:
        return reporter.tally
    return shared if shared is not None else Tally()


async def mark(
    *,
    db: Database,
    actor: Actor | None,
    days_old: int,
    keep_latest: int,
    reporter: Reporter | None = None,
    tally: Tally | None = None,
) -> GcOutcome:
    """Flag the candidates MARKED (and audit each); nothing is moved or deleted."""
    outcome = GcOutcome("mark", _tally(reporter, tally))
    now = utcnow()
    async with db.write() as session:
        marked = await session.exec(
            update(Export)
            .where(
                col(Export.id).in_(gc_policy.candidate_ids(days_old, keep_latest)),
                # Re-checked on the row itself: PostgreSQL re-evaluates these on a row a
                # concurrent pin changed, where the subquery above sees its snapshot.
                col(Export.pinned).is_(False),
                col(Export.gc_state) == NONE,
            )
            .values(gc_state=MARKED, marked_at=now)
            # A bulk UPDATE: do not load the matched rows back into the session.
            .execution_options(synchronize_session=False)
        )
        count = marked.rowcount or 0
        await session.exec(
            insert(GcAudit).from_select(
                ["at", "actor_id", "run_id", "action", "export_id", "bytes"],
                sa_select(
                    literal(now, UTCDateTime()),
                    literal(actor.id if actor else None, Integer()),
                    literal(reporter.run_id if reporter else None, Integer()),
                    literal("mark"),
                    col(Export.id),
                    func.coalesce(col(Render.bytes), 0),
                )
                .join(Render, col(Render.id) == col(Export.render_id))
                .where(col(Export.gc_state) == MARKED, col(Export.marked_at) == now),
            )
        )
        # Summed over the exports marked now (a range of the (gc_state, id) index), not
        # over the audit table, which only grows.
        marked_bytes = await (await session.connection()).execute(
            sa_select(func.coalesce(func.sum(col(Render.bytes)), 0))
            .select_from(Export)
            .join(Render, col(Render.id) == col(Export.render_id))
            .where(col(Export.gc_state) == MARKED, col(Export.marked_at) == now)
        )
        outcome.tally.marked += count
        outcome.tally.bytes_marked += int(marked_bytes.scalar_one() or 0)
    return outcome


async def _audit(
    session: AsyncSession,
    actor: Actor | None,
    action: str,
    changed: Sequence[Held],
    reporter: Reporter | None,
) -> None:
    """One audit row per export changed, in one statement."""
    if not changed:
        return
    at = utcnow()
    await (await session.connection()).execute(
        insert(GcAudit),
        [
            {
                "at": at,
                "actor_id": actor.id if actor else None,
                "action": action,
                "run_id": reporter.run_id if reporter else None,
                "export_id": export.id,
                "bytes": export.bytes,
            }
            for export in changed
        ],
    )


async def _ids_in_state(
    db: Database, state: str, after: int, cutoff: datetime | None = None
) -> list[int]:
    """The next batch of export ids in ``state``, by id (keyset: flat memory at any size)."""
    query = select(Export.id).where(col(Export.gc_state) == state, col(Export.id) > after)
    if cutoff is not None:
        query = query.where(col(Export.archived_at) < cutoff)
    async with db.read() as session:
        rows = await session.exec(query.order_by(col(Export.id)).limit(BATCH))
        return [i for i in rows.all() if i is not None]


async def _count_in_state(db: Database, state: str, cutoff: datetime | None = None) -> int:
    query = sa_select(func.count()).select_from(Export).where(col(Export.gc_state) == state)
    if cutoff is not None:
        query = query.where(col(Export.archived_at) < cutoff)
    async with db.read() as session:
        return int((await (await session.connection()).execute(query)).scalar_one())


async def _move(
    session: AsyncSession, store: MediaStore, rows: list[Held], source: GcState, target: GcState
) -> list[Held]:
    """Record ``target`` on the locked rows a stage may move; returns those it moved. Pinned
    or latest since they were listed, they stay (and a mark is taken back)."""
    conn = await session.connection()
    kept = [e.id for e in rows if e.protected]
    if kept and source == MARKED:
        await conn.execute(
            update(Export).where(col(Export.id).in_(kept)).values(gc_state=NONE, marked_at=None)
        )
    moving = [e for e in rows if not e.protected]
    if not moving:
        return []
    now = utcnow()
    if target == ARCHIVED:
        missing = set(await off_loop(_without_bytes, store, moving))
        for export_id in sorted(missing):
            log.error("export %s: its file is missing; it is not archived", export_id)
        moving = [e for e in moving if e.id not in missing]
        if moving:
            await conn.execute(
                update(Export)
                .where(col(Export.id) == bindparam("export_id"))
                .values(
                    gc_state=ARCHIVED,
                    files_pending=True,
                    archive_key=bindparam("key"),
                    archived_at=now,
                ),
                [{"export_id": e.id, "key": e.archive_key} for e in moving],
            )
    else:
        await conn.execute(
            update(Export)
            .where(col(Export.id).in_([e.id for e in moving]))
            .values(gc_state=target, files_pending=True, deleted_at=now)
        )
    return moving


def _without_bytes(store: MediaStore, exports: Sequence[Held]) -> list[int]:
    """The ids of exports whose bytes are under neither name (a stat each: in a thread)."""
    return [e.id for e in exports if not has_bytes(store, e)]


async def _stage(
    *,
    db: Database,
    store: MediaStore,
    actor: Actor | None,
    action: str,
    source: GcState,
    target: GcState,
    cutoff: datetime | None,
    outcome: GcOutcome,
    checkpoint: Checkpoint,
    reporter: Reporter | None,
) -> None:
    """Move every export in ``source`` to ``target``, a batch at a time: commit the new state
    (re-checked under the rows' locks), then settle the files under the locks again."""
    tally = outcome.tally
    tally.total += await _count_in_state(db, source, cutoff)
    after = 0
    while ids := await _ids_in_state(db, source, after, cutoff):
        after = ids[-1]
        await checkpoint("listed")
        async with db.write() as session:
            rows = [e for e in await lock(session, ids) if e.gc_state == source]
            moved = await _move(session, store, rows, source, target)
            await _audit(session, actor, action, moved, reporter)
        for export in moved:
            outcome.list(export.id)
        if target == ARCHIVED:
            tally.archived += len(moved)
        else:
            tally.deleted += len(moved)
        await checkpoint("recorded")
        if moved:
            disk = Freed()
            async with db.write() as session:
                await settle_locked(session, store, [e.id for e in moved], disk)
            tally.bytes_freed += disk.freed
            tally.bytes_moved += disk.moved
        await checkpoint("settled")
        tally.done += len(ids)
        if reporter:
            await reporter.step()
        # Background work: leave the write lock free for a moment, so users' edits that
        # wait for it (SQLite's writers poll) are not starved by batch after batch.
        await asyncio.sleep(PAUSE_S)


async def archive(
    *,
    db: Database,
    store: MediaStore,
    actor: Actor | None,
    checkpoint: Checkpoint = no_fault,
    reporter: Reporter | None = None,
    tally: Tally | None = None,
) -> GcOutcome:
    """Move MARKED exports to archive/; a pin or a newer latest export since marking wins."""
    outcome = GcOutcome("archive", _tally(reporter, tally))
    await converge(db=db, store=store, checkpoint=checkpoint)
    await _stage(
        db=db,
        store=store,
        actor=actor,
        action="archive",
        source=MARKED,
        target=ARCHIVED,
        cutoff=None,
        outcome=outcome,
        checkpoint=checkpoint,
        reporter=reporter,
    )
    await outcome.load(db)
    return outcome


async def delete(
    *,
    db: Database,
    store: MediaStore,
    actor: Actor | None,
    days_in_archive: int,
    confirm: bool,
    proxy_days_old: int = 30,
    segment_days_old: int = gc_segments.DAYS_OLD,
    blob_grace_s: int = 24 * 3600,
    checkpoint: Checkpoint = no_fault,
    reporter: Reporter | None = None,
    tally: Tally | None = None,
) -> GcOutcome:
    """Permanently delete archived exports past the retention, the files of proxies of old
    versions older than ``proxy_days_old`` (they render again on request), proxy segments no
    proxy a project shows lists and none has used for ``segment_days_old``, and source bytes
    no video has referenced for ``blob_grace_s``; needs ``confirm``."""
    if not confirm:
        raise ConfirmationRequiredError()
    outcome = GcOutcome("delete", _tally(reporter, tally))
    await converge(db=db, store=store, checkpoint=checkpoint)
    await _stage(
        db=db,
        store=store,
        actor=actor,
        action="delete",
        source=ARCHIVED,
        target=DELETED,
        cutoff=utcnow() - timedelta(days=days_in_archive),
        outcome=outcome,
        checkpoint=checkpoint,
        reporter=reporter,
    )
    outcome.tally.proxies_reclaimed += await gc_proxies.reclaim(
        db=db,
        store=store,
        actor=actor,
        days_old=proxy_days_old,
        tally=outcome.tally,
        checkpoint=checkpoint,
    )
    _, freed = await gc_segments.reclaim(
        db=db, store=store, days_old=segment_days_old, checkpoint=checkpoint
    )
    outcome.tally.bytes_freed += freed
    outcome.tally.bytes_freed += await gc_blobs.delete_unreferenced(
        db, store, actor, blob_grace_s, checkpoint
    )
    await outcome.load(db)
    return outcome


async def restore(
    *,
    db: Database,
    store: MediaStore,
    actor: Actor | None,
    export_id: int,
    checkpoint: Checkpoint = no_fault,
) -> Export:
    """Bring an archived export back to export/. Refuses, changing nothing, if its bytes are
    gone (``MediaMissingError``)."""
    async with db.write() as session:
        rows = await lock(session, [export_id])
        if not rows or rows[0].gc_state != ARCHIVED:
            raise NotFoundError("Archived export", ids.encode("Export", export_id))
        if not await off_loop(has_bytes, store, rows[0]):
            raise MediaMissingError(
                f"the archived file of export {export_id} is missing; nothing was changed"
            )
        await session.exec(
            update(Export)
            .where(col(Export.id) == export_id)
            .values(gc_state=NONE, files_pending=True, archived_at=None, marked_at=None)
        )
        await _audit(session, actor, "restore", rows, None)
    await checkpoint("recorded")
    async with db.write() as session:
        await settle_locked(session, store, [export_id])
    await checkpoint("settled")
    async with db.read() as session:
        export = await session.get(Export, export_id)
    assert export is not None  # a restored export is never deleted: its row stays
    return export


async def full_cycle(
    *,
    db: Database,
    store: MediaStore,
    actor: Actor | None,
    days_old: int,
    keep_latest: int,
    days_in_archive: int,
    confirm: bool,
    reporter: Reporter | None = None,
) -> GcOutcome:
    """Mark, archive and delete, in that order, as one report."""
    if not confirm:
        raise ConfirmationRequiredError()
    outcome = GcOutcome("full-cycle", _tally(reporter, None))
    tally = outcome.tally
    await mark(
        db=db,
        actor=actor,
        days_old=days_old,
        keep_latest=keep_latest,
        reporter=reporter,
        tally=tally,
    )
    archived = await archive(db=db, store=store, actor=actor, reporter=reporter, tally=tally)
    deleted = await delete(
        db=db,
        store=store,
        actor=actor,
        days_in_archive=days_in_archive,
        proxy_days_old=days_old,
        confirm=True,
        reporter=reporter,
        tally=tally,
    )
    # An export archived and deleted in the same cycle is listed (and its bytes freed) once.
    seen = {e.id for e in deleted.exports}
    outcome.exports = (deleted.exports + [e for e in archived.exports if e.id not in seen])[
        :MAX_LISTED
    ]
    return outcome

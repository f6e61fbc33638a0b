"""The garbage collector: mark, archive, delete (and restore), never on its own.

The latest export of a project and every pinned export are protected, and that is checked
again at every stage, inside the transaction that changes the row, with the row locked. Files
move only in ``gc_files.settle``, under the row's lock, after the new state is committed; an
interrupted step is finished by ``converge()``. One run at a time holds the lock in
``gc_runs``.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Integer, func, insert, literal, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import Database
from models.states import GcState
from models.store import MediaStore
from models.tables import (
    Export,
    GcAudit,
    Project,
    Render,
    UTCDateTime,
    utcnow,
)
from resolvers import gc_blobs, gc_policy, gc_proxies
from resolvers.errors import ConfirmationRequiredError, MediaMissingError, NotFoundError
from resolvers.gc_files import (
    ARCHIVED,
    BATCH,
    DELETED,
    MARKED,
    NONE,
    Checkpoint,
    Freed,
    archive_key,
    converge,
    has_bytes,
    locked,
    no_fault,
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

    def list(self, export: Export) -> None:
        """Remember an export the action changed (the audit table has every one)."""
        if len(self.exports) < MAX_LISTED:
            self.exports.append(export)

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
        marked_bytes = await (await session.connection()).execute(
            sa_select(func.coalesce(func.sum(col(GcAudit.bytes)), 0)).where(
                col(GcAudit.action) == "mark", col(GcAudit.at) == now
            )
        )
        outcome.tally.marked += count
        outcome.tally.bytes_marked += int(marked_bytes.scalar_one())
    return outcome


def _protected(export: Export, project: Project) -> bool:
    """Pinned, or its project's latest export: never moved, whatever a stage was told."""
    return export.pinned or project.latest_export_id == export.id


async def _audit(
    session: AsyncSession,
    actor: Actor | None,
    action: str,
    export: Export,
    size: int,
    reporter: Reporter | None,
) -> None:
    session.add(
        GcAudit(
            actor_id=actor.id if actor else None,
            action=action,
            export_id=export.id,
            bytes=size,
            run_id=reporter.run_id if reporter else None,
        )
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
        moved: list[int] = []
        async with db.write() as session:
            for export, render, project in (await session.exec(locked(ids))).all():
                if export.gc_state != source:
                    continue  # changed since the batch was listed
                if _protected(export, project):
                    if source == MARKED:
                        # Pinned or latest since it was marked: it stays, unmarked.
                        export.gc_state, export.marked_at = NONE, None
                        session.add(export)
                    continue
                if target == ARCHIVED and not has_bytes(store, export, render):
                    log.error("export %s: its file is missing; it is not archived", export.id)
                    continue
                size = render.bytes or 0
                now = utcnow()
                export.gc_state, export.files_pending = target, True
                if target == ARCHIVED:
                    export.archive_key, export.archived_at = archive_key(export), now
                else:
                    export.deleted_at = now
                session.add(export)
                await _audit(session, actor, action, export, size, reporter)
                moved.append(export.id or 0)
                outcome.list(export)
                if target == ARCHIVED:
                    tally.archived += 1
                else:
                    tally.deleted += 1
        await checkpoint("recorded")
        if moved:
            disk = Freed()
            async with db.write() as session:
                await settle_locked(session, store, moved, disk)
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
    return outcome


async def delete(
    *,
    db: Database,
    store: MediaStore,
    actor: Actor | None,
    days_in_archive: int,
    confirm: bool,
    proxy_days_old: int = 30,
    blob_grace_s: int = 24 * 3600,
    checkpoint: Checkpoint = no_fault,
    reporter: Reporter | None = None,
    tally: Tally | None = None,
) -> GcOutcome:
    """Permanently delete archived exports past the retention, the files of proxies of old
    versions older than ``proxy_days_old`` (they render again on request), and source bytes
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
    outcome.tally.bytes_freed += await gc_blobs.delete_unreferenced(
        db, store, actor, blob_grace_s, checkpoint
    )
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
        row = (await session.exec(locked([export_id]))).first()
        if row is None or row[0].gc_state != ARCHIVED:
            raise NotFoundError("Archived export", export_id)
        export, render, _ = row
        if not has_bytes(store, export, render):
            raise MediaMissingError(
                f"the archived file of export {export_id} is missing; nothing was changed"
            )
        export.gc_state, export.files_pending = NONE, True
        export.archived_at = export.marked_at = None
        session.add(export)
        await _audit(session, actor, "restore", export, render.bytes or 0, None)
    await checkpoint("recorded")
    async with db.write() as session:
        await settle_locked(session, store, [export_id])
    await checkpoint("settled")
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


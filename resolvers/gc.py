"""The garbage collector: mark, archive, delete (and restore), never on its own.

The latest export of a project and every pinned export are protected, and that is checked
again at every stage, inside the transaction that changes the row, with the row locked. Files
move only in ``gc_files.settle``, under the row's lock, after the new state is committed; an
interrupted step is finished by ``converge()``. One run at a time holds the lock in
``gc_runs``.
"""

import asyncio
import contextlib
import logging
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Integer, Select, and_, func, insert, literal, or_, update
from sqlalchemy import delete as delete_rows
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import keys
from models.db import Database
from models.states import GcState
from models.states import RenderStatus as Status
from models.store import MediaStore
from models.tables import (
    Blob,
    EditOperation,
    Export,
    GcAudit,
    Project,
    Render,
    UTCDateTime,
    Video,
    utcnow,
)
from resolvers.errors import ConfirmationRequiredError, MediaMissingError, NotFoundError
from resolvers.gc_files import (
    ARCHIVED,
    BATCH,
    DELETED,
    MARKED,
    NONE,
    Checkpoint,
    archive_key,
    converge,
    has_bytes,
    locked,
    no_fault,
    settle_locked,
)
from resolvers.gc_runs import Reporter
from resolvers.users import Actor

__all__ = ["ARCHIVED", "DELETED", "MARKED", "NONE", "archive_key", "converge"]

log = logging.getLogger(__name__)
MAX_LISTED = 100  # exports an outcome lists (the audit table has every one)
PAUSE_S = 0.02  # between batches


@dataclass
class GcOutcome:
    """What one GC action did."""

    action: str
    run_id: str = field(default_factory=lambda: secrets.token_hex(8))
    marked: int = 0
    archived: int = 0
    deleted: int = 0
    restored: int = 0
    bytes: int = 0
    exports: list[Export] = field(default_factory=list)

    def add(self, action: str, export: Export, size: int) -> None:
        """Count one export an action changed (the first ``MAX_LISTED`` are listed)."""
        setattr(self, action + "d", getattr(self, action + "d") + 1)
        self.bytes += size
        if len(self.exports) < MAX_LISTED:
            self.exports.append(export)


def _unprotected() -> ColumnElement[bool]:
    """Neither pinned nor its project's latest export."""
    return and_(
        col(Export.pinned).is_(False),
        or_(col(Project.latest_export_id).is_(None), col(Project.latest_export_id) != Export.id),
    )


def _candidates(days_old: int, keep_latest: int) -> Select[int | None]:
    """The ids of exports the mark stage would flag: one query, whatever the table's size."""
    cutoff = utcnow() - timedelta(days=days_old)
    rank = (
        func.row_number()
        .over(partition_by=col(Export.project_id), order_by=col(Export.version).desc())
        .label("rank")
    )
    ranked = (
        sa_select(col(Export.id).label("id"), rank)
        .join(Render, col(Render.id) == col(Export.render_id))
        .where(col(Render.status) == Status.DONE, col(Export.gc_state) != DELETED)
        .subquery()
    )
    return (
        sa_select(col(Export.id))
        .join(ranked, ranked.c.id == col(Export.id))
        .join(Project, col(Project.id) == col(Export.project_id))
        .where(
            col(Export.gc_state) == NONE,
            col(Export.created_at) < cutoff,
            ranked.c.rank > keep_latest,
            _unprotected(),
        )
    )


async def candidates(
    *, db: Database, days_old: int, keep_latest: int, first: int = 100
) -> tuple[list[tuple[Export, int]], int, int]:
    """Dry run: (up to ``first`` exports the mark stage would flag with their bytes, how many
    there are in all, and their bytes in all)."""
    ids = _candidates(days_old, keep_latest).subquery()
    async with db.read() as session:
        totals = await (await session.connection()).execute(
            sa_select(func.count(), func.coalesce(func.sum(col(Render.bytes)), 0))
            .select_from(Export)
            .join(Render, col(Render.id) == col(Export.render_id))
            .where(col(Export.id).in_(sa_select(ids.c.id)))
        )
        count, size = totals.one()
        rows = (
            await session.exec(
                select(Export, Render)
                .join(Render, col(Render.id) == col(Export.render_id))
                .where(col(Export.id).in_(sa_select(ids.c.id)))
                .order_by(col(Export.id))
                .limit(first)
            )
        ).all()
    return [(e, r.bytes or 0) for e, r in rows], int(count or 0), int(size or 0)


async def stale_proxies(*, db: Database, days_old: int) -> tuple[int, int]:
    """Finished proxies of versions that are no longer current or latest: (count, bytes)."""
    cutoff = utcnow() - timedelta(days=days_old)
    query = (
        sa_select(func.count(), func.coalesce(func.sum(col(Render.bytes)), 0))
        .select_from(Render)
        .join(Project, col(Project.id) == col(Render.project_id))
        .where(
            col(Render.kind) == "proxy",
            col(Render.status) == Status.DONE,
            col(Render.version) != col(Project.current_version),
            or_(
                col(Project.latest_proxy_id).is_(None),
                col(Project.latest_proxy_id) != col(Render.id),
            ),
            col(Render.created_at) < cutoff,
        )
    )
    async with db.read() as session:
        count, size = (await (await session.connection()).execute(query)).one()
    return int(count or 0), int(size or 0)


async def mark(
    *,
    db: Database,
    actor: Actor | None,
    days_old: int,
    keep_latest: int,
    reporter: Reporter | None = None,
) -> GcOutcome:
    """Flag the candidates MARKED (and audit each); nothing is moved or deleted."""
    outcome = GcOutcome("mark")
    now = utcnow()
    async with db.write() as session:
        marked = await session.exec(
            update(Export)
            .where(
                col(Export.id).in_(_candidates(days_old, keep_latest)),
                # Re-checked on the row itself: PostgreSQL re-evaluates these on a row a
                # concurrent pin changed, where the subquery above sees its snapshot.
                col(Export.pinned).is_(False),
                col(Export.gc_state) == NONE,
            )
            .values(gc_state=MARKED, marked_at=now)
            # A bulk UPDATE: do not load the matched rows back into the session.
            .execution_options(synchronize_session=False)
        )
        outcome.marked = marked.rowcount or 0
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
        outcome.bytes = int(marked_bytes.scalar_one())
    if reporter:
        reporter.tally.marked += outcome.marked
        if reporter.action == "mark":
            reporter.tally.bytes += outcome.bytes
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
    if reporter:
        reporter.tally.total += await _count_in_state(db, source, cutoff)
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
                outcome.add(action, export, size)
                if reporter:
                    setattr(reporter.tally, action + "d", getattr(reporter.tally, action + "d") + 1)
                    reporter.tally.bytes += size
        await checkpoint("recorded")
        if moved:
            async with db.write() as session:
                await settle_locked(session, store, moved)
        await checkpoint("settled")
        if reporter:
            await reporter.step(len(ids))
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
) -> GcOutcome:
    """Move MARKED exports to archive/; a pin or a newer latest export since marking wins."""
    outcome = GcOutcome("archive")
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
    blob_grace_s: int = 24 * 3600,
    checkpoint: Checkpoint = no_fault,
    reporter: Reporter | None = None,
) -> GcOutcome:
    """Permanently delete archived exports past the retention, and source bytes no video has
    referenced for ``blob_grace_s``; needs ``confirm``."""
    if not confirm:
        raise ConfirmationRequiredError()
    outcome = GcOutcome("delete")
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
    freed = await _delete_blobs(db, store, actor, blob_grace_s, checkpoint)
    outcome.bytes += freed
    if reporter:
        reporter.tally.bytes += freed
    return outcome


async def _delete_blobs(
    db: Database, store: MediaStore, actor: Actor | None, grace_s: int, checkpoint: Checkpoint
) -> int:
    """Delete source bytes unreferenced for longer than the grace period; returns bytes freed."""
    cutoff = utcnow() - timedelta(seconds=grace_s)
    async with db.read() as session:
        due = list(
            (
                await session.exec(
                    select(Blob).where(Blob.ref_count == 0, col(Blob.unreferenced_at) < cutoff)
                )
            ).all()
        )
    freed = 0
    for blob in due:
        async with db.write() as session:
            gone = await session.exec(
                delete_rows(Blob)
                .where(col(Blob.id) == blob.id, col(Blob.ref_count) == 0)
                .returning(col(Blob.id))
            )
            if gone.scalar_one_or_none() is None:
                continue  # referenced again since the query above
            session.add(
                GcAudit(
                    actor_id=actor.id if actor else None,
                    action="delete-source",
                    blob_sha256=blob.sha256,
                    bytes=blob.bytes,
                )
            )
        await checkpoint("recorded")
        freed += blob.bytes
        # Move the bytes aside first: an upload of the same bytes may have re-referenced them
        # in the meantime (it commits its row before placing its file); then they go back.
        names = [blob.key, keys.mezzanine(blob.sha256)]  # the original and its 480p copy
        aside = {k: store.path(keys.aside_temp()) for k in names}
        for key, temp in aside.items():
            with contextlib.suppress(FileNotFoundError):
                os.replace(store.path(key), temp)
        async with db.read() as session:
            again = (await session.exec(select(Blob).where(Blob.sha256 == blob.sha256))).first()
        for key, temp in aside.items():
            if again is not None and temp.exists() and not store.path(key).exists():
                os.replace(temp, store.path(key))
            temp.unlink(missing_ok=True)
    return freed


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


async def set_pinned(
    *, db: Database, store: MediaStore, actor: Actor, project_id: int, version: int, pinned: bool
) -> Export:
    """Pin or unpin an export of the actor's; pinning an archived one restores it first."""
    for _ in range(3):
        async with db.write() as session:
            project = await session.get(Project, project_id)
            export = (
                await session.exec(
                    select(Export)
                    .where(Export.project_id == project_id, Export.version == version)
                    .with_for_update()
                )
            ).first()
            if project is None or project.owner_id != actor.id or export is None:
                raise NotFoundError(f"Export of version {version} of project", project_id)
            if export.gc_state == DELETED:
                raise NotFoundError(f"Export of version {version} of project", project_id)
            if not (pinned and export.gc_state == ARCHIVED):
                export.pinned = pinned
                if pinned and export.gc_state == MARKED:
                    export.gc_state, export.marked_at = NONE, None  # a pin takes a mark back
                session.add(export)
                session.add(
                    GcAudit(
                        actor_id=actor.id, action="pin" if pinned else "unpin", export_id=export.id
                    )
                )
                return export
        assert export.id is not None
        try:
            await restore(db=db, store=store, actor=actor, export_id=export.id)
        except NotFoundError:
            continue  # restored or deleted meanwhile: look again
    raise NotFoundError(f"Export of version {version} of project", project_id)


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
    marked = await mark(
        db=db, actor=actor, days_old=days_old, keep_latest=keep_latest, reporter=reporter
    )
    archived = await archive(db=db, store=store, actor=actor, reporter=reporter)
    deleted = await delete(
        db=db,
        store=store,
        actor=actor,
        days_in_archive=days_in_archive,
        confirm=True,
        reporter=reporter,
    )
    outcome = GcOutcome(
        "full-cycle",
        marked=marked.marked,
        archived=archived.archived,
        deleted=deleted.deleted,
        bytes=archived.bytes + deleted.bytes,
    )
    outcome.exports = (archived.exports + deleted.exports)[:MAX_LISTED]
    return outcome


async def unused_videos(*, db: Database) -> list[Video]:
    """Source videos that no project uses (as its source or in a concat)."""
    used_as_source = sa_select(col(Project.source_video_id))
    used_in_concat = sa_select(col(EditOperation.video_id)).where(
        col(EditOperation.video_id).is_not(None)
    )
    async with db.read() as session:
        rows = await session.exec(
            select(Video)
            .where(col(Video.id).not_in(used_as_source), col(Video.id).not_in(used_in_concat))
            .order_by(col(Video.id))
        )
        return list(rows.all())


def storage_usage(store: MediaStore) -> dict[str, tuple[int, int]]:
    """Bytes and files per area of the media root."""
    usage: dict[str, tuple[int, int]] = {}
    for area in keys.AREAS:
        files = [p for p in store.path(area).rglob("*") if p.is_file()]
        usage[area] = (sum(p.stat().st_size for p in files), len(files))
    return usage


async def in_state(
    *, db: Database, state: str, older_than: timedelta | None = None
) -> list[tuple[Export, int]]:
    """Exports in a GC state (archived: optionally only those archived before a cutoff)."""
    query = (
        select(Export, Render)
        .join(Render, col(Render.id) == col(Export.render_id))
        .where(col(Export.gc_state) == state)
        .order_by(col(Export.id))
    )
    if older_than is not None:
        query = query.where(col(Export.archived_at) < utcnow() - older_than)
    async with db.read() as session:
        rows = (await session.exec(query)).all()
    return [(export, render.bytes or 0) for export, render in rows]

"""The garbage collector: mark, archive, delete (and restore), never on its own.

The latest export of a project and every pinned export are protected, and that is checked
again at every stage, inside the transaction that changes the row. Every file move happens
in an order a crash can interrupt safely (link, record, unlink), and `converge()` finishes
whatever an interrupted run left half done.
"""

import contextlib
import os
import secrets
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import ColumnElement, Integer, Select, and_, func, insert, literal, or_, update
from sqlalchemy import delete as delete_rows
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import Database
from models.store import AREAS, MediaStore
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
from resolvers.errors import DomainError, NotFoundError
from resolvers.renders import Status
from resolvers.users import Actor

NONE, MARKED, ARCHIVED, DELETED = "none", "marked", "archived", "deleted"
# Test hook: awaited at every step boundary of a file move; production passes nothing.
Checkpoint = Callable[[str], Awaitable[None]]


async def _no_fault(_: str) -> None:
    return None


# Called with (done, total) as a long stage works through its exports.
Progress = Callable[[int, int], None]


def _quiet(done: int, total: int) -> None:
    return None


class ConfirmationRequired(DomainError):
    """Permanent deletion was asked for without ``confirm: true``."""

    def __init__(self) -> None:
        super().__init__("permanent deletion needs confirm: true; nothing was deleted")


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


def archive_key(export: Export) -> str:
    """Where an archived export lives, in the seed's layout."""
    return f"archive/{export.id}_v{export.version}_final.mp4"


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


async def mark(*, db: Database, actor: Actor | None, days_old: int, keep_latest: int) -> GcOutcome:
    """Flag the candidates MARKED (and audit each); nothing is moved or deleted."""
    outcome = GcOutcome("mark")
    now = utcnow()
    async with db.write() as session:
        marked = await session.exec(
            update(Export)
            .where(col(Export.id).in_(_candidates(days_old, keep_latest)))
            .values(gc_state=MARKED, marked_at=now)
            # A bulk UPDATE: do not load the matched rows back into the session.
            .execution_options(synchronize_session=False)
        )
        outcome.marked = marked.rowcount or 0
        await session.exec(
            insert(GcAudit).from_select(
                ["at", "actor_id", "action", "export_id", "bytes"],
                sa_select(
                    literal(now, UTCDateTime()),
                    literal(actor.id if actor else None, Integer()),
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
    return outcome


async def _guarded(
    session: AsyncSession, export_id: int, state: str
) -> tuple[Export, Render] | None:
    """The export if it is still in ``state`` and unprotected, re-read inside the transaction."""
    row = (
        await session.exec(
            select(Export, Render)
            .join(Render, col(Render.id) == Export.render_id)
            .join(Project, col(Project.id) == Export.project_id)
            .where(Export.id == export_id, Export.gc_state == state, _unprotected())
            .with_for_update()
        )
    ).first()
    return (row[0], row[1]) if row else None


async def _audit(
    session: AsyncSession, actor: Actor | None, action: str, export: Export, size: int
) -> None:
    session.add(
        GcAudit(
            actor_id=actor.id if actor else None, action=action, export_id=export.id, bytes=size
        )
    )


def _link(store: MediaStore, source_key: str, target_key: str) -> None:
    """Make ``target`` hold the bytes of ``source`` (a hard link; a copy across filesystems)."""
    source, target = store.path(source_key), store.path(target_key)
    if target.exists() or not source.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        temp = store.path(f"temp/gc-{secrets.token_hex(6)}")
        shutil.copyfile(source, temp)  # streamed, never the whole file in memory
        os.replace(temp, target)


async def archive(
    *,
    db: Database,
    store: MediaStore,
    actor: Actor | None,
    checkpoint: Checkpoint = _no_fault,
    progress: Progress = _quiet,
) -> GcOutcome:
    """Move MARKED exports to archive/; a pin or a newer latest export since marking wins."""
    outcome = GcOutcome("archive")
    await converge(db=db, store=store)
    async with db.read() as session:
        marked = list(
            (await session.exec(select(Export.id).where(Export.gc_state == MARKED))).all()
        )
    for done, export_id in enumerate(marked, 1):
        progress(done, len(marked))
        assert export_id is not None
        async with db.write() as session:
            found = await _guarded(session, export_id, MARKED)
            if found is None:
                # Protected since it was marked: it stays where it is, unmarked.
                await session.exec(
                    update(Export)
                    .where(col(Export.id) == export_id, col(Export.gc_state) == MARKED)
                    .values(gc_state=NONE, marked_at=None)
                )
                continue
            export, render = found
            assert render.output_key is not None
            _link(store, render.output_key, archive_key(export))
            await checkpoint("linked")
            export.gc_state, export.archive_key, export.archived_at = (
                ARCHIVED,
                archive_key(export),
                utcnow(),
            )
            session.add(export)
            await _audit(session, actor, "archive", export, render.bytes or 0)
        await checkpoint("recorded")
        store.path(render.output_key).unlink(missing_ok=True)
        await checkpoint("unlinked")
        outcome.archived += 1
        outcome.bytes += render.bytes or 0
        outcome.exports.append(export)
    return outcome


async def delete(
    *,
    db: Database,
    store: MediaStore,
    actor: Actor | None,
    days_in_archive: int,
    confirm: bool,
    blob_grace_s: int = 24 * 3600,
    checkpoint: Checkpoint = _no_fault,
    progress: Progress = _quiet,
) -> GcOutcome:
    """Permanently delete archived exports past the retention, and source bytes no video has
    referenced for ``blob_grace_s``; needs ``confirm``."""
    if not confirm:
        raise ConfirmationRequired()
    outcome = GcOutcome("delete")
    await converge(db=db, store=store)
    cutoff = utcnow() - timedelta(days=days_in_archive)
    async with db.read() as session:
        due = list(
            (
                await session.exec(
                    select(Export.id).where(
                        Export.gc_state == ARCHIVED, col(Export.archived_at) < cutoff
                    )
                )
            ).all()
        )
    for done, export_id in enumerate(due, 1):
        progress(done, len(due))
        assert export_id is not None
        async with db.write() as session:
            found = await _guarded(session, export_id, ARCHIVED)
            if found is None:
                continue
            export, render = found
            export.gc_state, export.deleted_at = DELETED, utcnow()
            session.add(export)
            await _audit(session, actor, "delete", export, render.bytes or 0)
        await checkpoint("recorded")
        store.path(archive_key(export)).unlink(missing_ok=True)
        await checkpoint("unlinked")
        outcome.deleted += 1
        outcome.bytes += render.bytes or 0
        outcome.exports.append(export)
    outcome.bytes += await _delete_blobs(db, store, actor, blob_grace_s, checkpoint)
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
        keys = [blob.key, f"videos/{blob.sha256}_480p.mp4"]  # the original and its 480p copy
        aside = {k: store.path(f"temp/gc-{secrets.token_hex(6)}") for k in keys}
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
    checkpoint: Checkpoint = _no_fault,
) -> Export:
    """Bring an archived export back to export/, as long as its archive file is still there."""
    async with db.write() as session:
        export = await session.get(Export, export_id, with_for_update=True)
        render = await session.get(Render, export.render_id) if export else None
        if export is None or render is None or export.gc_state != ARCHIVED:
            raise NotFoundError("Archived export", export_id)
        assert render.output_key is not None
        _link(store, archive_key(export), render.output_key)
        await checkpoint("linked")
        export.gc_state, export.archive_key, export.archived_at, export.marked_at = (
            NONE,
            None,
            None,
            None,
        )
        session.add(export)
        await _audit(session, actor, "restore", export, render.bytes or 0)
    await checkpoint("recorded")
    store.path(archive_key(export)).unlink(missing_ok=True)
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
    days_in_archive: int,
    confirm: bool,
) -> GcOutcome:
    """Mark, archive and delete, in that order, as one report."""
    if not confirm:
        raise ConfirmationRequired()
    marked = await mark(db=db, actor=actor, days_old=days_old, keep_latest=1)
    archived = await archive(db=db, store=store, actor=actor)
    deleted = await delete(
        db=db, store=store, actor=actor, days_in_archive=days_in_archive, confirm=True
    )
    return GcOutcome(
        "full-cycle",
        marked=marked.marked,
        archived=archived.archived,
        deleted=deleted.deleted,
        bytes=archived.bytes + deleted.bytes,
        exports=archived.exports + deleted.exports,
    )


async def converge(*, db: Database, store: MediaStore) -> int:
    """Finish what an interrupted run left: no row points at a missing file, no stray copies."""
    fixed = 0
    async with db.read() as session:
        rows = (
            await session.exec(
                select(Export, Render)
                .join(Render, col(Render.id) == Export.render_id)
                .where(
                    col(Export.gc_state).in_([NONE, MARKED, ARCHIVED, DELETED]),
                    Render.status == Status.DONE,
                )
            )
        ).all()
    for export, render in rows:
        if render.output_key is None:
            continue
        live, kept = store.path(render.output_key), store.path(archive_key(export))
        if export.gc_state in (NONE, MARKED) and kept.exists():
            if not live.exists():
                _link(store, archive_key(export), render.output_key)
            kept.unlink()
            fixed += 1
        elif export.gc_state == ARCHIVED and live.exists():
            _link(store, render.output_key, archive_key(export))
            live.unlink()
            fixed += 1
        elif export.gc_state == DELETED and (kept.exists() or live.exists()):
            kept.unlink(missing_ok=True)
            live.unlink(missing_ok=True)
            fixed += 1
    return fixed


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
    for area in AREAS:
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

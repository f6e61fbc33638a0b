"""What the GC may take, and what storage holds: the candidate query, stale proxies, unused
videos, usage per area and listings by state. Read-only: nothing here changes a row or a file."""

from datetime import timedelta

from sqlalchemy import ColumnElement, Select, and_, func, or_
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from models import keys
from models.db import Database
from models.states import RenderKind, RenderStatus
from models.store import MediaStore
from models.tables import EditOperation, Export, Project, Render, Video, utcnow
from resolvers.gc_files import DELETED, NONE


def unprotected() -> ColumnElement[bool]:
    """Neither pinned nor its project's latest export."""
    return and_(
        col(Export.pinned).is_(False),
        or_(col(Project.latest_export_id).is_(None), col(Project.latest_export_id) != Export.id),
    )


def candidate_ids(days_old: int, keep_latest: int) -> Select[int | None]:
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
        .where(col(Render.status) == RenderStatus.DONE, col(Export.gc_state) != DELETED)
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
            unprotected(),
        )
    )


async def candidates(
    *, db: Database, days_old: int, keep_latest: int, first: int = 100
) -> tuple[list[tuple[Export, int]], int, int]:
    """Dry run: (up to ``first`` exports the mark stage would flag with their bytes, how many
    there are in all, and their bytes in all)."""
    ids = candidate_ids(days_old, keep_latest).subquery()
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


def stale_proxy(days_old: int) -> ColumnElement[bool]:
    """A finished proxy of a version that is neither current nor the latest proxy, older than
    ``days_old`` days: derived data nobody is watching (joined with its Project)."""
    return and_(
        col(Render.kind) == RenderKind.PROXY,
        col(Render.status) == RenderStatus.DONE,
        col(Render.version) != col(Project.current_version),
        or_(col(Project.latest_proxy_id).is_(None), col(Project.latest_proxy_id) != col(Render.id)),
        col(Render.created_at) < utcnow() - timedelta(days=days_old),
    )


async def stale_proxies(*, db: Database, days_old: int) -> tuple[int, int]:
    """Proxies ``gcDelete`` would reclaim now: (count, bytes)."""
    query = (
        sa_select(func.count(), func.coalesce(func.sum(col(Render.bytes)), 0))
        .select_from(Render)
        .join(Project, col(Project.id) == col(Render.project_id))
        .where(stale_proxy(days_old))
    )
    async with db.read() as session:
        count, size = (await (await session.connection()).execute(query)).one()
    return int(count or 0), int(size or 0)


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
    """Bytes and files per area of the media store. A file with several names (an export
    reused through a hard link) counts once, in the first area that holds it."""
    usage: dict[str, tuple[int, int]] = {}
    seen: set[object] = set()
    for area in keys.AREAS:
        size = count = 0
        for entry in store.listing(area):
            if entry.identity in seen:
                continue
            seen.add(entry.identity)
            size, count = size + entry.bytes, count + 1
        usage[area] = (size, count)
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

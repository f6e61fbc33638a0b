"""What the GC may take, and what storage holds: the candidate query, stale proxies, unused
videos, usage per area and listings by state. Read-only: nothing here changes a row or a file."""

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, Select, and_, func, or_
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from models import keys
from models.db import Database
from models.states import RenderKind, RenderStatus
from models.store import MediaStore
from models.tables import EditOperation, Export, Project, Render, Video, utcnow
from resolvers.errors import BadInputError
from resolvers.gc_files import DELETED, NONE


def unprotected() -> ColumnElement[bool]:
    """Neither pinned nor its project's latest export."""
    return and_(
        col(Export.pinned).is_(False),
        or_(col(Project.latest_export_id).is_(None), col(Project.latest_export_id) != Export.id),
    )


MAX_DAYS = 36_500  # a hundred years: past it a date is out of every database's range
MAX_KEEP = 1_000_000


def check_days(**days: int) -> None:
    """Day counts of a GC rule (``daysOld=…``): 0 to ``MAX_DAYS``, refused otherwise."""
    for name, value in days.items():
        if value < 0:
            raise BadInputError(f"{name} must be 0 or more")
        if value > MAX_DAYS:
            raise BadInputError(f"{name} must be at most {MAX_DAYS} (a hundred years)")


def check_rules(*, days_old: int, keep_latest: int) -> None:
    """The GC's rules are counts: a negative one is refused, not guessed at."""
    check_days(daysOld=days_old)
    if keep_latest < 0:
        raise BadInputError("keepLatest must be 0 or more")
    if keep_latest > MAX_KEEP:
        raise BadInputError(f"keepLatest must be at most {MAX_KEEP}")


def kept_from(keep_latest: int) -> ScalarSelect[int]:
    """Per project (correlated with ``Project``): the version of its ``keep_latest``-th newest
    finished, undeleted export; older ones may go. NULL when it has no more than that many.
    One short walk down the (project, version) index per project, whatever the table's size."""
    return (
        sa_select(col(Export.version))
        .join(Render, col(Render.id) == col(Export.render_id))
        .where(
            col(Export.project_id) == col(Project.id),
            col(Render.status) == RenderStatus.DONE,
            col(Export.gc_state) != DELETED,
        )
        .order_by(col(Export.version).desc())
        .offset(keep_latest - 1)
        .limit(1)
        .correlate(Project)
        .scalar_subquery()
    )


def _candidates(days_old: int, keep_latest: int, *columns: Any) -> Select[Any]:
    """``columns`` of the exports the mark stage would flag: finished, not yet collected,
    older than ``days_old`` days, not among their project's ``keep_latest`` newest finished
    exports, and unprotected. The cutoff version is found once per project, not ranked per
    export."""
    check_rules(days_old=days_old, keep_latest=keep_latest)
    query = (
        sa_select(*columns)
        .select_from(Export)
        .join(Render, col(Render.id) == col(Export.render_id))
        .where(
            col(Render.status) == RenderStatus.DONE,
            col(Export.gc_state) == NONE,
            col(Export.created_at) < utcnow() - timedelta(days=days_old),
            unprotected(),
        )
    )
    if keep_latest == 0:
        return query.join(Project, col(Project.id) == col(Export.project_id))
    # Materialized: each project's cutoff is found once, before the join (a planner that
    # inlined it would look it up again for every export of the project).
    cut = (
        sa_select(col(Project.id).label("project_id"), kept_from(keep_latest).label("kept"))
        .cte("cut", nesting=True)
        .prefix_with("MATERIALIZED")
    )
    return (
        query.join(cut, cut.c.project_id == col(Export.project_id))
        .join(Project, col(Project.id) == col(Export.project_id))
        # A deleted project keeps none: only its pinned exports stay.
        .where(or_(col(Export.version) < cut.c.kept, col(Project.deleted_at).is_not(None)))
    )


def candidate_ids(days_old: int, keep_latest: int) -> Select[Any]:
    """The ids of exports the mark stage would flag: one query, whatever the table's size."""
    return _candidates(days_old, keep_latest, col(Export.id))


async def candidates(
    *, db: Database, days_old: int, keep_latest: int, first: int = 100
) -> tuple[list[tuple[Export, int]], int, int]:
    """Dry run: (up to ``first`` exports the mark stage would flag with their bytes, how many
    there are in all, and their bytes in all). The candidates are found once: the totals and
    the first ones come from the same materialized set, in one statement."""
    found = (
        _candidates(
            days_old,
            keep_latest,
            col(Export.id).label("id"),
            func.coalesce(col(Render.bytes), 0).label("bytes"),
        )
        .cte("found")
        .prefix_with("MATERIALIZED")
    )
    count = sa_select(func.count()).select_from(found).scalar_subquery()
    size = sa_select(func.coalesce(func.sum(found.c.bytes), 0)).select_from(found)
    first_ones = (
        sa_select(found.c.id, found.c.bytes, count.label("count"), size.scalar_subquery())
        .order_by(found.c.id)
        .limit(max(first, 1))
    )
    async with db.read() as session:
        rows = (await (await session.connection()).execute(first_ones)).all()
        if not rows:
            return [], 0, 0
        listed = {row[0]: int(row[1]) for row in rows[:first]}
        exports = (
            await session.exec(
                select(Export).where(col(Export.id).in_(list(listed))).order_by(col(Export.id))
            )
        ).all()
    listing = [(e, listed[e.id]) for e in exports if e.id is not None]
    return listing, int(rows[0][2]), int(rows[0][3])


def stale_proxy(days_old: int) -> ColumnElement[bool]:
    """A finished proxy of a version that is neither current nor the latest proxy, older than
    ``days_old`` days: derived data nobody is watching (joined with its Project)."""
    return and_(
        col(Render.kind) == RenderKind.PROXY,
        col(Render.status) == RenderStatus.DONE,
        or_(
            col(Render.version) != col(Project.current_version),
            col(Project.deleted_at).is_not(None),
        ),
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
    used_as_source = sa_select(col(Project.source_video_id)).where(
        col(Project.deleted_at).is_(None)
    )
    used_in_concat = (
        sa_select(col(EditOperation.video_id))
        .join(Project, col(Project.id) == col(EditOperation.project_id))
        .where(col(EditOperation.video_id).is_not(None), col(Project.deleted_at).is_(None))
    )
    async with db.read() as session:
        rows = await session.exec(
            select(Video)
            .where(
                col(Video.id).not_in(used_as_source),
                col(Video.id).not_in(used_in_concat),
                col(Video.deleted_at).is_(None),
            )
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

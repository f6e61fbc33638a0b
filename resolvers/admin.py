"""What an operator looks at: any user's projects, the render queue's figures and the GC
audit, page by page. Admins only, enforced by the schema fields that call these."""

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from models.db import Database
from models.states import RenderKind, RenderStatus
from models.tables import GcAudit, GcRun, Project, Render, User, utcnow
from resolvers import pagination

# The average render time is over this many of the latest finished renders of a kind.
AVERAGE_OVER = 100


@dataclass(frozen=True)
class KindFigures:
    """The queue of one render kind: waiting, running, finished and failed lately, and how
    long the latest finished ones took on average (seconds; None before any finished)."""

    kind: RenderKind
    queued: int
    running: int
    done_last_day: int
    failed_last_day: int
    average_seconds: float | None


async def projects_of(
    *, db: Database, user_id: int, first: int, after: str | None, deleted: bool = False
) -> pagination.Page[Project]:
    """A user's projects, newest first; ``deleted``: with the ones deleted (an admin's view)."""
    query = select(Project).where(Project.owner_id == user_id)
    if not deleted:
        query = query.where(col(Project.deleted_at).is_(None))
    return await pagination.newest_first(
        db, query, col(Project.id), lambda p: p.id, first=first, after=after
    )


async def render_queue(*, db: Database) -> list[KindFigures]:
    """Per kind: queued and running now, done and failed in the last day, average time."""
    day_ago = utcnow() - timedelta(days=1)
    figures = []
    async with db.read() as session:
        connection = await session.connection()  # plain rows: aggregates
        counts = {
            (str(kind), str(status)): int(n)
            for kind, status, n in (
                await connection.execute(
                    sa_select(col(Render.kind), col(Render.status), func.count())
                    .where(col(Render.status).in_((RenderStatus.QUEUED, RenderStatus.RUNNING)))
                    .group_by(col(Render.kind), col(Render.status))
                )
            ).all()
        }
        ended = {
            (str(kind), str(status)): int(n)
            for kind, status, n in (
                await connection.execute(
                    sa_select(col(Render.kind), col(Render.status), func.count())
                    .where(
                        col(Render.status).in_((RenderStatus.DONE, RenderStatus.FAILED)),
                        col(Render.finished_at) >= day_ago,
                    )
                    .group_by(col(Render.kind), col(Render.status))
                )
            ).all()
        }
        for kind in RenderKind:
            latest = (
                await session.exec(
                    select(Render.started_at, Render.finished_at)
                    .where(
                        Render.kind == kind,
                        Render.status == RenderStatus.DONE,
                        col(Render.started_at).is_not(None),
                        col(Render.finished_at).is_not(None),
                    )
                    .order_by(col(Render.id).desc())
                    .limit(AVERAGE_OVER)
                )
            ).all()
            spans = [(end - start).total_seconds() for start, end in latest if start and end]
            figures.append(
                KindFigures(
                    kind=kind,
                    queued=counts.get((kind, RenderStatus.QUEUED), 0),
                    running=counts.get((kind, RenderStatus.RUNNING), 0),
                    done_last_day=ended.get((kind, RenderStatus.DONE), 0),
                    failed_last_day=ended.get((kind, RenderStatus.FAILED), 0),
                    average_seconds=sum(spans) / len(spans) if spans else None,
                )
            )
    return figures


async def recent_failures(*, db: Database, first: int = 20) -> list[Render]:
    """The latest failed renders, newest first, with their reasons."""
    async with db.read() as session:
        rows = await session.exec(
            select(Render)
            .where(Render.status == RenderStatus.FAILED)
            .order_by(col(Render.finished_at).desc(), col(Render.id).desc())
            .limit(pagination.page_size(first))
        )
        return list(rows.all())


async def audit(
    *, db: Database, first: int, after: str | None
) -> pagination.Page[tuple[GcAudit, str | None]]:
    """The GC audit, newest first, each entry with who did it: the admin's name, or for a
    run without an account (the CLI's operator, cron) who started the run."""
    first = pagination.page_size(first)
    after_key = pagination.decode_cursor(after)
    query = (
        select(GcAudit, func.coalesce(User.name, GcRun.holder))
        .join(User, col(User.id) == col(GcAudit.actor_id), isouter=True)
        .join(GcRun, col(GcRun.id) == col(GcAudit.run_id), isouter=True)
    )
    if after_key is not None:
        query = query.where(col(GcAudit.id) < after_key)
    async with db.read() as session:
        rows = list(
            (await session.exec(query.order_by(col(GcAudit.id).desc()).limit(first + 1))).all()
        )
    items: list[tuple[str, tuple[GcAudit, str | None]]] = [
        (pagination.encode_cursor(entry.id or 0), (entry, name)) for entry, name in rows
    ]
    return pagination.Page(items=items[:first], has_next=len(items) > first)

"""The render lifecycle: every change of a render's status, and the event that announces it.

queued → running (a worker's claim) → done | failed | cancelled. A running attempt may also
be released to run again, and a proxy nobody wants any more is superseded. The API, the
worker and the reconciler call these functions; no other module writes a render's status.
Each change is committed first and announced after: the database is the truth, Redis only
the delivery, so an announcement that fails is logged and the change stands.
"""

import logging
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import Database
from models.states import RenderKind, RenderStatus
from models.tables import Export, Project, ProxyPlan, Render, utcnow
from resolvers import telemetry
from resolvers.probe import Probe
from resolvers.queue import JobQueue, deliver

log = logging.getLogger(__name__)
RENDER_JOB = "render"  # the worker function that runs a render
ACTIVE = (RenderStatus.QUEUED, RenderStatus.RUNNING)


class Announce(Protocol):
    """Publishes one render event: a worker's ``EventLog.publish``, a request's
    ``JobQueue.announce`` (which gives up quickly on a hung Redis)."""

    async def __call__(
        self,
        kind: str,
        render: Render,
        export: Export | None = None,
        segments: tuple[int, int] | None = None,
        /,
    ) -> object:
        """Publish ``kind`` (``resolvers.events.KINDS``) with the render as it now is, and
        for a segmented proxy how many of its segments are there."""


def claimable(now: datetime) -> ColumnElement[bool]:
    """Renders a worker may take: queued, or running under a lease that expired."""
    return or_(
        col(Render.status) == RenderStatus.QUEUED,
        (col(Render.status) == RenderStatus.RUNNING) & (col(Render.lease_until) < now),
    )


def _held(render: Render) -> ColumnElement[bool]:
    """The row is still as ``render`` was read: same status, same attempt. For a worker's
    claimed render this is its attempt owning it (not cancelled, not taken over)."""
    return and_(
        col(Render.id) == render.id,
        col(Render.status) == render.status,
        col(Render.attempts) == render.attempts,
    )


async def queued(session: AsyncSession, render: Render) -> Render:
    """QUEUED from the caller's commit on: a new render, or a finished one asked for again.
    Call ``enqueue`` after that commit."""
    render.status, render.error, render.progress = RenderStatus.QUEUED, None, 0.0
    render.attempts, render.lease_until, render.finished_at = 0, None, None
    session.add(render)
    await session.flush()
    return render


def imported(render: Render) -> Render:
    """DONE from the start: a render finished elsewhere, whose file an import brings in."""
    render.status, render.progress = RenderStatus.DONE, 1.0
    return render


async def on_demand(session: AsyncSession, render: Render) -> Render:
    """QUEUED because someone asked for this very render (a reclaimed proxy of an old
    version): it renders even though its version is no longer current."""
    render.on_demand = True
    return await queued(session, render)


async def reclaim(session: AsyncSession, render: Render) -> None:
    """RECLAIMED by the GC, inside its transaction with the row locked: a finished proxy of
    an old version gives its file back (the caller removes it once this is committed).
    Nobody watches an old version's proxy, so there is nothing to announce."""
    render.status, render.progress, render.on_demand = RenderStatus.RECLAIMED, 0.0, False
    session.add(render)


async def enqueue(queue: JobQueue, render: Render) -> None:
    """Hand a committed QUEUED render to the workers and announce it."""
    assert render.id is not None
    await deliver(queue, render.job_id, RENDER_JOB, render.id)
    await _announce(queue.announce, "queued", render)


async def claim(
    *, db: Database, announce: Announce, render_id: int, lease_s: float
) -> Render | None:
    """RUNNING under a new attempt and its lease, if the render is claimable; else None. A
    render of a deleted project (queued just as it was deleted) is cancelled instead."""
    now = utcnow()
    claimed: Render | None = None
    async with db.write() as session:
        # Only counted: a render still RUNNING here is one whose worker stopped renewing.
        found = (
            await session.exec(
                select(Render.status, Project.deleted_at)
                .join(Project, col(Project.id) == col(Render.project_id))
                .where(Render.id == render_id)
            )
        ).first()
        before, deleted = found if found is not None else (None, None)
        if deleted is None:
            result = await session.exec(
                update(Render)
                .where(col(Render.id) == render_id, claimable(now))
                .values(
                    status=RenderStatus.RUNNING,
                    attempts=col(Render.attempts) + 1,
                    lease_until=now + timedelta(seconds=lease_s),
                    started_at=now,
                    error=None,
                )
                .returning(col(Render.id))
            )
            if result.scalar_one_or_none() is not None:
                claimed = await session.get(Render, render_id, populate_existing=True)
    if deleted is not None:
        await cancel(db=db, announce=announce, render_id=render_id, reason="project deleted")
        return None
    if claimed is None:
        return None
    if before == RenderStatus.RUNNING:
        telemetry.render_leases_lost.labels(claimed.kind.value).inc()
    transitioned("running", claimed)
    await _announce(announce, "progress", claimed)
    return claimed


async def renew(*, db: Database, render: Render, lease_s: float) -> None:
    """Extend the attempt's lease (no change of status: nothing to announce)."""
    async with db.write() as session:
        await session.exec(
            update(Render)
            .where(_held(render))
            .values(lease_until=utcnow() + timedelta(seconds=lease_s))
        )


async def progress(
    *,
    db: Database,
    announce: Announce,
    render: Render,
    fraction: float,
    lease_s: float,
    segments: tuple[int, int] | None = None,
) -> bool:
    """Record the attempt's progress and extend its lease; False once it no longer holds
    the render (cancelled, or taken over), so the caller stops."""
    async with db.write() as session:
        result = await session.exec(
            update(Render)
            .where(_held(render))
            .values(
                progress=round(fraction, 4),
                lease_until=utcnow() + timedelta(seconds=lease_s),
            )
            .returning(col(Render.id))
        )
        alive = result.scalar_one_or_none() is not None
    if alive:
        render.progress = round(fraction, 4)
        await _announce(announce, "progress", render, segments=segments)
    return alive


async def playable(
    *, db: Database, announce: Announce, render: Render, segments: tuple[int, int]
) -> None:
    """A segmented proxy a player can start: its first segment and first sound are there.
    Not a change of status (it is still running), but recorded for late readers."""
    async with db.write() as session:
        await session.exec(
            update(ProxyPlan).where(col(ProxyPlan.render_id) == render.id).values(playable=True)
        )
    await _announce(announce, "proxy_playable", render, segments=segments)


async def done(
    *, db: Database, announce: Announce, render: Render, output_key: str, size: int, facts: Probe
) -> str:
    """DONE with its file, if the attempt still holds the render: "done". Otherwise
    "cancelled" (the caller removes the file it moved into place: a cancelled render has
    none) or "superseded" (another attempt finished it; the file is the same)."""
    async with db.write() as session:
        result = await session.exec(
            update(Render)
            .where(_held(render))
            .values(
                status=RenderStatus.DONE,
                progress=1.0,
                output_key=output_key,
                bytes=size,
                width=facts.width,
                height=facts.height,
                duration=facts.duration,
                finished_at=utcnow(),
                lease_until=None,
                error=None,
            )
            .returning(col(Render.id))
        )
        if result.scalar_one_or_none() is None:
            now = await session.get(Render, render.id, populate_existing=True)
            if now is not None and now.status == RenderStatus.CANCELLED:
                return "cancelled"
            return "superseded"
        export = None
        if render.kind == RenderKind.EXPORT:
            export = (await session.exec(select(Export).where(Export.render_id == render.id))).one()
        await _advance_latest(session, render, export)
        finished = await session.get(Render, render.id, populate_existing=True)
    assert finished is not None
    await _announce(
        announce, "proxy_ready" if export is None else "export_complete", finished, export
    )
    return "done"


async def _advance_latest(session: AsyncSession, render: Render, export: Export | None) -> None:
    """Point the project at this proxy (or export) unless a newer version's is already there:
    latest means the highest version that finished, whatever order they finished in."""
    project = await session.get(Project, render.project_id, with_for_update=True)
    assert project is not None
    if project.deleted_at is not None:  # its owner deleted it meanwhile: nothing is latest
        return
    current: Render | Export | None = None
    if export is None and project.latest_proxy_id:
        current = await session.get(Render, project.latest_proxy_id)
    elif export is not None and project.latest_export_id:
        current = await session.get(Export, project.latest_export_id)
    if current is not None and current.version > render.version:
        return
    if export is None:
        project.latest_proxy_id = render.id
    else:
        project.latest_export_id = export.id
    session.add(project)


async def fail(*, db: Database, announce: Announce, render: Render, reason: str) -> None:
    """FAILED for good: by the attempt that holds the render, or by the reconciler for a
    render whose attempts are used up (only if nobody claimed it since it was read)."""
    await _end(db, announce, render, "failed", status=RenderStatus.FAILED, error=reason[:2000])


async def supersede(*, db: Database, announce: Announce, render: Render, current: int) -> None:
    """CANCELLED before it renders: a proxy of a version that is no longer current."""
    reason = f"superseded by version {current}"
    await _end(db, announce, render, "cancelled", status=RenderStatus.CANCELLED, error=reason)


async def release(
    *, db: Database, announce: Announce, render: Render, note: str, refund: bool = False
) -> None:
    """QUEUED again for another attempt, after a failure that may pass. ``refund`` gives the
    attempt back: a full disk is nobody's fault and must not use attempts up."""
    values: dict[str, Any] = {"status": RenderStatus.QUEUED, "lease_until": None, "error": note}
    if refund:
        values["attempts"] = col(Render.attempts) - 1
    await _change(db, announce, _held(render), render.id, "queued", values)


async def cancel(
    *, db: Database, announce: Announce, render_id: int, reason: str = "cancelled"
) -> Render | None:
    """CANCELLED if still queued or running (a worker running it stops its ffmpeg at its
    next heartbeat); the render as it now is."""
    active = and_(col(Render.id) == render_id, col(Render.status).in_(ACTIVE))
    values = {"status": RenderStatus.CANCELLED, "error": reason, "finished_at": utcnow()}
    return await _change(db, announce, active, render_id, "cancelled", values)


async def _end(db: Database, announce: Announce, render: Render, kind: str, **values: Any) -> None:
    """A final status, if the row is still as ``render`` was read."""
    values.update(finished_at=utcnow(), lease_until=None)
    await _change(db, announce, _held(render), render.id, kind, values)


async def _change(
    db: Database,
    announce: Announce,
    where: ColumnElement[bool],
    render_id: int | None,
    kind: str,
    values: dict[str, Any],
) -> Render | None:
    """Apply ``values`` where ``where`` holds; announce ``kind`` only if the row changed."""
    async with db.write() as session:
        result = await session.exec(
            update(Render).where(where).values(**values).returning(col(Render.id))
        )
        changed = result.scalar_one_or_none() is not None
        row = await session.get(Render, render_id, populate_existing=True)
    if changed and row is not None:
        await _announce(announce, kind, row)
    return row


# What each announced change is called in the log; progress reports are not changes.
_TRANSITIONS = {
    "queued": "queued",
    "running": "running",
    "proxy_ready": "done",
    "export_complete": "done",
    "failed": "failed",
    "cancelled": "cancelled",
}


def transitioned(kind: str, render: Render) -> None:
    """Log and count a change of status: one line each, a failure (a timeout too) or a retry
    after one at WARNING with its reason, since someone may have to act on it."""
    status = _TRANSITIONS.get(kind)
    if status is None:
        return
    telemetry.render_changed(status, render)
    fields = {
        "render_id": render.id,
        "render_kind": render.kind.value,
        "project_id": render.project_id,
        "version": render.version,
        "attempt": render.attempts,
        "status": status,
    }
    warn = status == "failed" or (status == "queued" and bool(render.error))
    if warn or (status == "cancelled" and render.error):
        fields["reason"] = render.error
    message = f"render {render.id} ({render.kind.value} of project {render.project_id} "
    message += f"v{render.version}) {status}"
    if "reason" in fields:
        message += f": {render.error}"
    log.log(logging.WARNING if warn else logging.INFO, message, extra=fields)


async def _announce(
    announce: Announce,
    kind: str,
    render: Render,
    export: Export | None = None,
    *,
    segments: tuple[int, int] | None = None,
) -> None:
    transitioned(kind, render)
    try:
        await announce(kind, render, export, segments)
    except Exception:  # the change is committed; a subscriber that missed it reads the row
        log.warning("could not announce %s of render %s", kind, render.id, exc_info=True)

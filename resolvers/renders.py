"""Renders and exports: rows the workers turn into files, and the rules around them."""

import hashlib
from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import tuple_
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import keys, redis_keys
from models.db import Database
from models.states import GcState, RenderKind, RenderStatus
from models.tables import Blob, Export, Project, ProxyPlan, Render, Version, Video
from resolvers import ids, lifecycle, projects
from resolvers.errors import NotFoundError
from resolvers.presets import Preset
from resolvers.queue import JobQueue
from resolvers.users import Actor


def job_id(kind: str, project_id: int, version: int) -> str:
    """Deterministic, so a second enqueue of the same work collapses into the first."""
    return redis_keys.render_job(kind, project_id, version)


def output_key(kind: str, project_id: int, version: int) -> str:
    """Where the finished file lives, in the seed's layout."""
    return keys.render_output(RenderKind(kind), project_id, version)


def content_key(source_sha256: str, ops_hash: str, preset: Preset) -> str:
    """Equal keys render to equal files: the source bytes, the effective ops, the preset."""
    return hashlib.sha256(f"{source_sha256}\n{ops_hash}\n{preset.key}".encode()).hexdigest()


async def source_sha256(session: AsyncSession, project: Project) -> str:
    """The SHA-256 of a project's source bytes."""
    sha = (
        await session.exec(
            select(Blob.sha256)
            .join(Video, col(Video.blob_id) == col(Blob.id))
            .where(Video.id == project.source_video_id)
        )
    ).one()
    return sha


async def project_source(*, db: Database, project_id: int) -> str | None:
    """The SHA-256 of a project's source bytes, read before a write transaction (it never
    changes), or None if there is no such project."""
    async with db.read() as session:
        return (
            await session.exec(
                select(Blob.sha256)
                .join(Video, col(Video.blob_id) == col(Blob.id))
                .join(Project, col(Project.source_video_id) == col(Video.id))
                .where(col(Project.id) == project_id)
            )
        ).first()


async def add_render(
    session: AsyncSession,
    project: Project,
    version: Version,
    kind: RenderKind,
    preset: Preset,
    *,
    source: str | None = None,
) -> Render:
    """A QUEUED render of ``version``, inside the caller's transaction; ``lifecycle.enqueue``
    it after commit. The caller asked ``queue.admit`` before opening the transaction: Redis
    is never waited on under the write lock. ``source``: the project's source SHA-256, if the
    caller read it already (``project_source``)."""
    assert project.id is not None
    sha = source if source is not None else await source_sha256(session, project)
    render = Render(
        project_id=project.id,
        kind=kind,
        version=version.number,
        preset=preset.name,
        content_key=content_key(sha, version.ops_hash, preset),
        job_id=job_id(kind, project.id, version.number),
    )
    return await lifecycle.queued(session, render)


async def request_export(
    *,
    db: Database,
    queue: JobQueue,
    actor: Actor,
    project_id: int,
    version: int | None,
    preset: Preset,
) -> tuple[Export, Render]:
    """Queue a full-resolution export of a version (default: current); an existing one is reused."""
    try:
        return await _request_export(db, queue, actor, project_id, version, preset, False)
    except _AdmitFirst:
        pass
    # A render is needed: count it against the rate limit outside any transaction, so a
    # hung Redis never holds the write lock; over the limit nothing is written.
    await queue.admit(user_id=actor.id, kind=RenderKind.EXPORT)
    try:
        return await _request_export(db, queue, actor, project_id, version, preset, True)
    except IntegrityError:
        # A concurrent request for the same export inserted it first: that one is ours too.
        return await _request_export(db, queue, actor, project_id, version, preset, True)


class _AdmitFirst(Exception):
    """The request needs a render that the rate limit has not counted yet."""


async def _request_export(
    db: Database,
    queue: JobQueue,
    actor: Actor,
    project_id: int,
    version: int | None,
    preset: Preset,
    admitted: bool,
) -> tuple[Export, Render]:
    async with db.write() as session:
        # Not locked (the GC locks exports before projects): a render queued while its
        # project is deleted is cancelled when a worker claims it (lifecycle.claim).
        project = await session.get(Project, project_id)
        if project is None or not projects.owned(project, actor):
            raise NotFoundError("Project", ids.encode("Project", project_id))
        number = project.current_version if version is None else version
        row = (
            await session.exec(
                select(Version).where(Version.project_id == project_id, Version.number == number)
            )
        ).first()
        if row is None:
            raise NotFoundError(f"Version {number} of project", ids.encode("Project", project_id))
        export = (
            await session.exec(
                select(Export)
                .where(Export.project_id == project_id, Export.version == number)
                # Its GC state is decided here: wait for a GC step that holds the row.
                .with_for_update()
            )
        ).first()
        if export is not None:
            render = await session.get(Render, export.render_id)
            assert render is not None
            deleted = export.gc_state == GcState.DELETED
            # The GC deleted its file for good, or it failed or was cancelled: asking again
            # renders it again.
            renders_again = deleted or render.status in (
                RenderStatus.FAILED,
                RenderStatus.CANCELLED,
            )
            if renders_again and not admitted:
                raise _AdmitFirst  # rolls back; nothing was written
            if deleted:
                export.gc_state, export.pinned = GcState.NONE, False
                export.marked_at = export.archived_at = export.deleted_at = None
                session.add(export)
            if renders_again:
                await lifecycle.queued(session, render)
            elif render.status not in lifecycle.ACTIVE:
                return export, render
        else:
            if not admitted:
                raise _AdmitFirst  # rolls back; nothing was written
            render = await add_render(session, project, row, RenderKind.EXPORT, preset)
            assert render.id is not None
            export = Export(project_id=project_id, version=number, render_id=render.id)
            session.add(export)
            await session.flush()
    await lifecycle.enqueue(queue, render)
    return export, render


async def request_proxy(
    *, db: Database, queue: JobQueue, actor: Actor, project_id: int, version: int | None
) -> Render:
    """The proxy of a version (default: current). One the GC reclaimed, or that failed or was
    cancelled, is rendered again, even for a version that is no longer current."""
    async with db.read() as session:
        project = await session.get(Project, project_id)
        if project is None or not projects.owned(project, actor):
            raise NotFoundError("Project", ids.encode("Project", project_id))
        number = project.current_version if version is None else version
        render = (
            await session.exec(
                select(Render).where(
                    Render.project_id == project_id,
                    Render.kind == RenderKind.PROXY,
                    Render.version == number,
                )
            )
        ).first()
    if render is None:
        raise NotFoundError(f"Version {number} of project", ids.encode("Project", project_id))
    if render.status not in _RENDERS_AGAIN:
        return render
    # Counted against the rate limit before the transaction (Redis is never waited on
    # under the write lock); over the limit nothing is queued.
    await queue.admit(user_id=actor.id, kind=RenderKind.PROXY)
    async with db.write() as session:
        # The project is looked at again: it may have been deleted meanwhile (a render that
        # still slips in is cancelled when a worker claims it).
        current = await session.get(Project, project_id, populate_existing=True)
        if current is None or not projects.owned(current, actor):
            raise NotFoundError("Project", ids.encode("Project", project_id))
        again = await session.get(Render, render.id, with_for_update=True)
        assert again is not None
        if again.status not in _RENDERS_AGAIN:
            return again  # asked for twice at once: the other request queued it
        await lifecycle.on_demand(session, again)
    await lifecycle.enqueue(queue, again)
    return again


_RENDERS_AGAIN = (RenderStatus.RECLAIMED, RenderStatus.FAILED, RenderStatus.CANCELLED)


async def cancel_render(*, db: Database, queue: JobQueue, actor: Actor, render_id: int) -> Render:
    """Cancel a queued or running render; a worker running it kills its ffmpeg."""
    render = await _owned(db, actor, Render, render_id)
    if render.status not in lifecycle.ACTIVE:
        return render
    cancelled = await lifecycle.cancel(db=db, announce=queue.announce, render_id=render_id)
    assert cancelled is not None  # renders are never deleted
    return cancelled


OwnedRow = TypeVar("OwnedRow", Render, Export)


async def _owned(db: Database, actor: Actor, model: type[OwnedRow], pk: int) -> OwnedRow:
    """A render or export of one of the actor's projects, or ``NotFoundError``."""
    async with db.read() as session:
        row = await session.get(model, pk)
        project = await session.get(Project, row.project_id) if row else None
    if row is None or project is None or not projects.owned(project, actor):
        raise NotFoundError(model.__name__, ids.encode(model.__name__, pk))
    return row


async def get_render(*, db: Database, actor: Actor, render_id: int) -> Render:
    """One render of the actor's projects, or ``NotFoundError``."""
    return await _owned(db, actor, Render, render_id)


async def get_export(*, db: Database, actor: Actor, export_id: int) -> Export:
    """One export of the actor's projects, or ``NotFoundError``."""
    return await _owned(db, actor, Export, export_id)


async def renders_by_ids(*, db: Database, ids: Sequence[int]) -> list[Render | None]:
    """Batch lookup for loaders (the caller already owns the projects)."""
    async with db.read() as session:
        rows = (await session.exec(select(Render).where(col(Render.id).in_(ids)))).all()
    found = {r.id: r for r in rows}
    return [found.get(i) for i in ids]


async def exports_by_ids(*, db: Database, ids: Sequence[int]) -> list[Export | None]:
    """Batch lookup for loaders (the caller already owns the projects)."""
    async with db.read() as session:
        rows = (await session.exec(select(Export).where(col(Export.id).in_(ids)))).all()
    found = {e.id: e for e in rows}
    return [found.get(i) for i in ids]


async def renders_of_versions(
    *, db: Database, kind: str, keys: Sequence[tuple[int, int]]
) -> list[Render | None]:
    """Batch lookup: the render of ``kind`` for each (project id, version)."""
    async with db.read() as session:
        rows = (
            await session.exec(
                select(Render).where(
                    Render.kind == kind, tuple_(Render.project_id, Render.version).in_(list(keys))
                )
            )
        ).all()
    found = {(r.project_id, r.version): r for r in rows}
    return [found.get(k) for k in keys]


async def exports_of_project(*, db: Database, actor: Actor, project_id: int) -> list[Export]:
    """Every export of one of the actor's projects (an admin: of any), newest version first."""
    async with db.read() as session:
        project = await session.get(Project, project_id)
        if project is None or (project.owner_id != actor.id and not actor.is_admin):
            raise NotFoundError("Project", ids.encode("Project", project_id))
        rows = await session.exec(
            select(Export)
            .where(Export.project_id == project_id)
            .order_by(col(Export.version).desc())
        )
        return list(rows.all())


async def exports_of_versions(
    *, db: Database, keys: Sequence[tuple[int, int]]
) -> list[Export | None]:
    """Batch lookup: the export of each (project id, version), if one was requested."""
    async with db.read() as session:
        rows = (
            await session.exec(
                select(Export).where(tuple_(Export.project_id, Export.version).in_(list(keys)))
            )
        ).all()
    found = {(e.project_id, e.version): e for e in rows}
    return [found.get(k) for k in keys]


async def finished_render(*, db: Database, project: Project, kind: str) -> Render | None:
    """The current version's render of ``kind``, if it is DONE."""
    async with db.read() as session:
        return (
            await session.exec(
                select(Render).where(
                    Render.project_id == project.id,
                    Render.kind == kind,
                    Render.version == project.current_version,
                    Render.status == RenderStatus.DONE,
                )
            )
        ).first()


async def finished_export(*, db: Database, project: Project) -> Export | None:
    """The current version's export, if it is DONE."""
    render = await finished_render(db=db, project=project, kind=RenderKind.EXPORT)
    if render is None:
        return None
    async with db.read() as session:
        return (await session.exec(select(Export).where(Export.render_id == render.id))).first()


async def playable_proxy(*, db: Database, project: Project) -> Render | None:
    """The current version's proxy, if a player can start it (running or done, its first
    segment there)."""
    async with db.read() as session:
        return (
            await session.exec(
                select(Render)
                .join(ProxyPlan, col(ProxyPlan.render_id) == col(Render.id))
                .where(
                    Render.project_id == project.id,
                    Render.kind == RenderKind.PROXY,
                    Render.version == project.current_version,
                    col(Render.status).in_((RenderStatus.RUNNING, RenderStatus.DONE)),
                    col(ProxyPlan.playable),
                )
            )
        ).first()

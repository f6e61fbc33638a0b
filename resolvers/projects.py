"""Projects: an owner's edits of one source video."""

import unicodedata
from collections.abc import Sequence

from sqlmodel import col, select

from models.db import Database
from models.tables import Project, Render, utcnow
from resolvers import ids, lifecycle, pagination
from resolvers.errors import BadInputError, NotFoundError
from resolvers.queue import JobQueue
from resolvers.users import Actor


def clean_name(name: str) -> str:
    """A project name with its whitespace tidied; 1 to 200 characters."""
    cleaned = " ".join(name.split())
    if not 1 <= len(cleaned) <= 200:
        raise BadInputError("a project name is 1 to 200 characters")
    if has_control(cleaned):
        raise BadInputError("a project name has no control characters")
    return cleaned


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (NUL, escape, …): never in a name."""
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in text)


def owned(project: Project | None, actor: Actor) -> bool:
    """Whether ``project`` is one of the actor's and not deleted."""
    return project is not None and project.owner_id == actor.id and project.deleted_at is None


async def get_project(*, db: Database, actor: Actor, project_id: int) -> Project:
    """One of the actor's projects, or ``NotFoundError``."""
    async with db.read() as session:
        project = await session.get(Project, project_id)
    if project is None or not owned(project, actor):
        raise NotFoundError("Project", ids.encode("Project", project_id))
    return project


async def list_projects(
    *, db: Database, actor: Actor, first: int, after: str | None
) -> pagination.Page[Project]:
    """The actor's projects, newest first."""
    query = select(Project).where(Project.owner_id == actor.id, col(Project.deleted_at).is_(None))
    return await pagination.newest_first(
        db, query, col(Project.id), lambda p: p.id, first=first, after=after
    )


async def projects_by_ids(
    *, db: Database, actor: Actor, ids: Sequence[int]
) -> list[Project | None]:
    """Batch lookup for loaders: the actor's projects (an admin's: any, deleted ones too,
    as the admin console shows them) in the order asked."""
    query = select(Project).where(col(Project.id).in_(ids))
    if not actor.is_admin:
        query = query.where(Project.owner_id == actor.id, col(Project.deleted_at).is_(None))
    async with db.read() as session:
        rows = (await session.exec(query)).all()
    found = {p.id: p for p in rows}
    return [found.get(i) for i in ids]


async def rename_project(*, db: Database, actor: Actor, project_id: int, name: str) -> Project:
    """Give one of the actor's projects a new name."""
    cleaned = clean_name(name)
    async with db.write() as session:
        project = await session.get(Project, project_id, with_for_update=True)
        if project is None or not owned(project, actor):
            raise NotFoundError("Project", ids.encode("Project", project_id))
        project.name = cleaned
        session.add(project)
    return project


async def delete_project(
    *, db: Database, queue: JobQueue, actor: Actor, project_id: int
) -> Project:
    """Delete one of the actor's projects. It is gone from the API at once; its queued and
    running renders are cancelled; its renders and exports are left to the GC (nothing is
    latest any more; pinned exports stay until their owner unpins them); the videos only it
    used may be deleted."""
    async with db.write() as session:
        project = await session.get(Project, project_id, with_for_update=True)
        if project is None or not owned(project, actor):
            raise NotFoundError("Project", ids.encode("Project", project_id))
        project.deleted_at = utcnow()
        project.latest_proxy_id = project.latest_export_id = None
        session.add(project)
        active = (
            await session.exec(
                select(Render.id).where(
                    Render.project_id == project_id, col(Render.status).in_(lifecycle.ACTIVE)
                )
            )
        ).all()
    for render_id in active:
        if render_id is not None:
            await lifecycle.cancel(
                db=db, announce=queue.announce, render_id=render_id, reason="project deleted"
            )
    return project

"""Projects: an owner's edits of one source video."""

from collections.abc import Sequence

from sqlmodel import col, select

from models.db import Database
from models.tables import Project
from resolvers import pagination
from resolvers.errors import BadInputError, NotFoundError
from resolvers.users import Actor


def clean_name(name: str) -> str:
    """A project name with its whitespace tidied; 1 to 200 characters."""
    cleaned = " ".join(name.split())
    if not 1 <= len(cleaned) <= 200:
        raise BadInputError("a project name is 1 to 200 characters")
    return cleaned


async def get_project(*, db: Database, actor: Actor, project_id: int) -> Project:
    """One of the actor's projects, or ``NotFoundError``."""
    async with db.read() as session:
        project = await session.get(Project, project_id)
    if project is None or project.owner_id != actor.id:
        raise NotFoundError("Project", project_id)
    return project


async def list_projects(
    *, db: Database, actor: Actor, first: int, after: str | None
) -> pagination.Page[Project]:
    """The actor's projects, newest first."""
    query = select(Project).where(Project.owner_id == actor.id)
    return await pagination.newest_first(
        db, query, col(Project.id), lambda p: p.id, first=first, after=after
    )


async def projects_by_ids(
    *, db: Database, actor: Actor, ids: Sequence[int]
) -> list[Project | None]:
    """Batch lookup for loaders: the actor's projects in the order asked."""
    async with db.read() as session:
        rows = (
            await session.exec(
                select(Project).where(col(Project.id).in_(ids), Project.owner_id == actor.id)
            )
        ).all()
    found = {p.id: p for p in rows}
    return [found.get(i) for i in ids]

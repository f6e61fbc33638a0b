"""Projects: an owner's edits of one source video."""

from sqlmodel import col, select

from models.db import Database
from models.tables import Project, Version, Video
from resolvers import pagination
from resolvers.errors import BadInputError, NotFoundError
from resolvers.users import Actor


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not 1 <= len(cleaned) <= 200:
        raise BadInputError("a project name is 1 to 200 characters")
    return cleaned


async def create_project(*, db: Database, actor: Actor, video_id: int, name: str) -> Project:
    """A new project at version 0: the source video with no ops."""
    cleaned = _clean_name(name)
    async with db.write() as session:
        video = await session.get(Video, video_id)
        if video is None or video.owner_id != actor.id:
            raise NotFoundError("Video", video_id)
        project = Project(owner_id=actor.id, name=cleaned, source_video_id=video_id)
        session.add(project)
        await session.flush()
        assert project.id is not None
        session.add(
            Version(
                project_id=project.id,
                number=0,
                parent=None,
                actor_id=actor.id,
                frame_width=video.width,
                frame_height=video.height,
                frame_duration=video.duration,
            )
        )
    return project


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

"""The Query root."""

import strawberry

from resolvers import ids, projects, renders, users, videos
from resolvers.errors import NotFoundError
from schema.admin import AdminQuery
from schema.gc import GcQuery
from schema.permissions import IsAdmin
from schema.types import (
    Connection,
    Export,
    Info,
    Node,
    OpType,
    Project,
    Render,
    User,
    Video,
    connection,
    op_types,
)


async def _video(info: Info, public_id: str) -> Video | None:
    try:
        video_id = ids.decode(public_id, "Video")
        return Video.from_row(
            await videos.get_video(db=info.context.db, actor=info.context.actor, video_id=video_id)
        )
    except NotFoundError:
        return None


async def _project(info: Info, public_id: str) -> Project | None:
    try:
        project_id = ids.decode(public_id, "Project")
        return Project.from_row(
            await projects.get_project(
                db=info.context.db, actor=info.context.actor, project_id=project_id
            )
        )
    except NotFoundError:
        return None


async def _render_or_export(info: Info, kind: str, pk: int) -> Render | Export | None:
    try:
        if kind == "Render":
            row = await renders.get_render(
                db=info.context.db, actor=info.context.actor, render_id=pk
            )
            return Render.from_row(row)
        export = await renders.get_export(
            db=info.context.db, actor=info.context.actor, export_id=pk
        )
        return Export.from_row(export)
    except NotFoundError:
        return None


def _me(info: Info) -> User:
    actor = info.context.actor
    return User(
        id=strawberry.ID(ids.encode("User", actor.id)), name=actor.name, is_admin=actor.is_admin
    )


@strawberry.type
class Query(GcQuery, AdminQuery):
    @strawberry.field(description="The signed-in user.")
    def me(self, info: Info) -> User:
        return _me(info)

    @strawberry.field(description="Any object by its global id; null if it is not yours.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        decoded = ids.decode_any(id)
        kind = decoded[0] if decoded else None
        if kind == "Video":
            return await _video(info, id)
        if kind == "Project":
            return await _project(info, id)
        if kind in ("Render", "Export"):
            return await _render_or_export(info, kind, decoded[1] if decoded else 0)
        me = _me(info)
        return me if kind == "User" and me.id == id else None

    @strawberry.field
    async def video(self, info: Info, id: strawberry.ID) -> Video | None:
        return await _video(info, id)

    @strawberry.field
    async def videos(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[Video]:
        page = await videos.list_videos(
            db=info.context.db,
            actor=info.context.actor,
            first=20 if first is None else first,
            after=after,
        )
        return connection(page, Video.from_row)

    @strawberry.field
    async def project(self, info: Info, id: strawberry.ID) -> Project | None:
        return await _project(info, id)

    @strawberry.field
    async def projects(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[Project]:
        page = await projects.list_projects(
            db=info.context.db,
            actor=info.context.actor,
            first=20 if first is None else first,
            after=after,
        )
        return connection(page, Project.from_row)

    @strawberry.field(description="The op vocabulary: name, description and params JSON Schema.")
    def op_types(self, info: Info) -> list[OpType]:
        info.context.actor  # noqa: B018 (signing in is required for every field)
        return op_types()

    @strawberry.field(permission_classes=[IsAdmin], description="Every account (admin only).")
    async def users(self, info: Info) -> list[User]:
        return [User.from_row(u) for u in await users.list_users(db=info.context.db)]

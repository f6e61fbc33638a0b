"""The Subscription root: proxyReady, exportComplete and the resumable renderEvents stream."""

from collections.abc import AsyncGenerator

import strawberry
from graphql import GraphQLError

from models import tables
from resolvers import events, ids, projects, renders
from resolvers.errors import NotFoundError
from schema.types import Export, Info, Render


@strawberry.interface(description="Something that happened to a render of the project.")
class RenderEvent:
    cursor: str = strawberry.field(description="Pass as `after` to resume after this event.")
    render: Render


@strawberry.type
class RenderQueued(RenderEvent):
    pass


@strawberry.type
class RenderProgress(RenderEvent):
    progress: float


@strawberry.type
class ProxyReady(RenderEvent):
    pass


@strawberry.type
class ExportComplete(RenderEvent):
    export: Export


@strawberry.type
class RenderFailed(RenderEvent):
    error: str


@strawberry.type
class RenderCancelled(RenderEvent):
    reason: str


def as_type(event: events.RenderEvent) -> RenderEvent:
    """The schema type of one event."""
    render = Render.from_row(event.render)
    match event.kind:
        case "queued":
            return RenderQueued(cursor=event.cursor, render=render)
        case "progress":
            return RenderProgress(
                cursor=event.cursor, render=render, progress=event.render.progress
            )
        case "proxy_ready":
            return ProxyReady(cursor=event.cursor, render=render)
        case "export_complete":
            assert event.export is not None
            return ExportComplete(
                cursor=event.cursor, render=render, export=Export.from_row(event.export)
            )
        case "failed":
            return RenderFailed(cursor=event.cursor, render=render, error=event.render.error or "")
        case _:
            return RenderCancelled(
                cursor=event.cursor, render=render, reason=event.render.error or "cancelled"
            )


async def _owned_project(info: Info, project_id: str) -> tables.Project:
    try:
        return await projects.get_project(
            db=info.context.db,
            actor=info.context.actor,
            project_id=ids.decode(project_id, "Project"),
        )
    except NotFoundError as e:
        raise GraphQLError(e.message, extensions={"code": "NOT_FOUND"}) from None


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Each proxy that finishes for this project. If the current version's proxy "
        "is already DONE when you subscribe, it is sent first."
    )
    async def proxy_ready(
        self, info: Info, project_id: strawberry.ID
    ) -> AsyncGenerator[Render, None]:
        project = await _owned_project(info, project_id)
        assert project.id is not None
        async with info.context.listen(project.id) as feed:
            sent: set[int | None] = set()
            current = await renders.finished_render(
                db=info.context.db, project=project, kind=renders.PROXY
            )
            if current is not None:
                sent.add(current.id)
                yield Render.from_row(current)
            async for event in feed:
                if event.kind == "proxy_ready" and event.render.id not in sent:
                    sent.add(event.render.id)
                    yield Render.from_row(event.render)

    @strawberry.subscription(
        description="Each export that finishes for this project. If the current version's "
        "export is already DONE when you subscribe, it is sent first."
    )
    async def export_complete(
        self, info: Info, project_id: strawberry.ID
    ) -> AsyncGenerator[Export, None]:
        project = await _owned_project(info, project_id)
        assert project.id is not None
        async with info.context.listen(project.id) as feed:
            sent: set[int | None] = set()
            current = await renders.finished_export(db=info.context.db, project=project)
            if current is not None:
                sent.add(current.id)
                yield Export.from_row(current)
            async for event in feed:
                if event.kind == "export_complete" and event.export and event.export.id not in sent:
                    sent.add(event.export.id)
                    yield Export.from_row(event.export)

    @strawberry.subscription(
        description="Every render event of the project, live. With `after` (a cursor from an "
        "earlier event) the events retained since then are replayed first, in order, once each."
    )
    async def render_events(
        self, info: Info, project_id: strawberry.ID, after: str | None = None
    ) -> AsyncGenerator[RenderEvent, None]:
        project = await _owned_project(info, project_id)
        assert project.id is not None
        if after is not None and not events.valid_cursor(after):
            raise GraphQLError(
                f"{after!r} is not a cursor of this API", extensions={"code": "BAD_USER_INPUT"}
            )
        # Listen first, then replay: nothing falls between the two, and what both saw
        # is sent once (by cursor order).
        async with info.context.listen(project.id) as feed:
            last = events.cursor_order(after) if after else (0, 0)
            if after is not None:
                for event in await info.context.events.replay(project_id=project.id, after=after):
                    last = events.cursor_order(event.cursor)
                    yield as_type(event)
            async for event in feed:
                if events.cursor_order(event.cursor) > last:
                    last = events.cursor_order(event.cursor)
                    yield as_type(event)

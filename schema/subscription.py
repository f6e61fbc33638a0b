"""The Subscription root: proxyPlayable, proxyReady, exportComplete and the resumable
renderEvents stream."""

from collections.abc import AsyncGenerator, Awaitable, Callable
from functools import partial

import strawberry

from models import tables
from models.states import RenderKind
from resolvers import events, ids, projects, renders
from resolvers.errors import BadInputError
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
    segments_done: int | None = strawberry.field(
        default=None, description="A segmented proxy's segments there so far."
    )
    segments_total: int | None = strawberry.field(
        default=None, description="A segmented proxy's segments in all."
    )


@strawberry.type(
    description="A proxy's first segment and first sound are there: render.playlistUrl "
    "plays now, and keeps growing until ProxyReady."
)
class ProxyPlayable(RenderEvent):
    segments_done: int
    segments_total: int


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
            done, total = event.segments or (None, None)
            return RenderProgress(
                cursor=event.cursor,
                render=render,
                progress=event.render.progress,
                segments_done=done,
                segments_total=total,
            )
        case "proxy_playable":
            done, total = event.segments or (0, 0)
            return ProxyPlayable(
                cursor=event.cursor, render=render, segments_done=done, segments_total=total
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
    return await projects.get_project(
        db=info.context.db, actor=info.context.actor, project_id=ids.decode(project_id, "Project")
    )


async def _proxies(
    info: Info,
    project_id: str,
    kind: str,
    current: Callable[[tables.Project], Awaitable[tables.Render | None]],
) -> AsyncGenerator[Render, None]:
    """Each proxy of the project an event of ``kind`` names, once; the current version's
    first if it is already there (``current``), so a late subscriber never waits for it."""
    project = await _owned_project(info, project_id)
    assert project.id is not None
    async with info.context.listen(project.id) as feed:
        sent: set[int | None] = set()
        now = await current(project)
        if now is not None:
            sent.add(now.id)
            yield Render.from_row(now)
        async for event in feed:
            if event.kind == kind and event.render.id not in sent:
                sent.add(event.render.id)
                yield event.once("render", partial(Render.from_row, event.render))


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Each proxy that finishes for this project. If the current version's proxy "
        "is already DONE when you subscribe, it is sent first."
    )
    async def proxy_ready(
        self, info: Info, project_id: strawberry.ID
    ) -> AsyncGenerator[Render, None]:
        async def current(project: tables.Project) -> tables.Render | None:
            return await renders.finished_render(
                db=info.context.db, project=project, kind=RenderKind.PROXY
            )

        async for render in _proxies(info, project_id, "proxy_ready", current):
            yield render

    @strawberry.subscription(
        description="Each proxy a player can start for this project: sent when its first "
        "segment is there, long before it is DONE; play render.playlistUrl. If the current "
        "version's proxy is already playable when you subscribe, it is sent first."
    )
    async def proxy_playable(
        self, info: Info, project_id: strawberry.ID
    ) -> AsyncGenerator[Render, None]:
        async def current(project: tables.Project) -> tables.Render | None:
            return await renders.playable_proxy(db=info.context.db, project=project)

        async for render in _proxies(info, project_id, "proxy_playable", current):
            yield render

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
                    yield event.once("export", partial(Export.from_row, event.export))

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
            raise BadInputError(f"{after!r} is not a cursor of this API")
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
                    yield event.once("event", partial(as_type, event))

"""The per-request context: database, media store, the caller and the request's loaders."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from models.db import Database
from models.states import RenderKind
from models.store import MediaStore
from models.tables import Blob, EditOperation, Export, Project, Render, Video
from resolvers import ops, projects, renders, versions, videos
from resolvers.errors import UnauthenticatedError
from resolvers.events import EventSource, RenderEvent
from resolvers.presets import Preset
from resolvers.queue import JobQueue
from resolvers.users import Actor

log = logging.getLogger(__name__)


class Background:
    """Work that outlives the request that started it (long GC stages); stopped at shutdown."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` on its own; a failure is logged (and recorded by the work itself)."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())

    async def stop(self) -> None:
        """Cancel what still runs and wait for it to record that it stopped."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@dataclass
class Loaders:
    """Batching lookups, one set per request, so lists do not issue a query per row."""

    video: DataLoader[int, Video | None]
    blob: DataLoader[int, Blob | None]
    own_ops: DataLoader[tuple[int, int], list[EditOperation]]
    project: DataLoader[int, Project | None]
    render: DataLoader[int, Render | None]
    export: DataLoader[int, Export | None]
    proxy_of_version: DataLoader[tuple[int, int], Render | None]
    export_of_version: DataLoader[tuple[int, int], Export | None]


def make_loaders(db: Database, actor: Actor | None, *, cache: bool = True) -> Loaders:
    """Loaders bound to one request's caller."""

    async def load_videos(keys: list[int]) -> list[Video | None]:
        if actor is None:
            return [None] * len(keys)
        return await videos.videos_by_ids(db=db, actor=actor, ids=keys)

    async def load_blobs(keys: list[int]) -> list[Blob | None]:
        return await videos.blobs_by_ids(db=db, ids=keys)

    async def load_ops(keys: list[tuple[int, int]]) -> list[list[EditOperation]]:
        return await versions.own_ops(db=db, keys=keys)

    async def load_projects(keys: list[int]) -> list[Project | None]:
        if actor is None:
            return [None] * len(keys)
        return await projects.projects_by_ids(db=db, actor=actor, ids=keys)

    async def load_renders(keys: list[int]) -> list[Render | None]:
        return await renders.renders_by_ids(db=db, ids=keys)

    async def load_exports(keys: list[int]) -> list[Export | None]:
        return await renders.exports_by_ids(db=db, ids=keys)

    async def load_proxies(keys: list[tuple[int, int]]) -> list[Render | None]:
        return await renders.renders_of_versions(db=db, kind=RenderKind.PROXY, keys=keys)

    async def load_version_exports(keys: list[tuple[int, int]]) -> list[Export | None]:
        return await renders.exports_of_versions(db=db, keys=keys)

    return Loaders(
        video=DataLoader(load_fn=load_videos, cache=cache),
        blob=DataLoader(load_fn=load_blobs, cache=cache),
        own_ops=DataLoader(load_fn=load_ops, cache=cache),
        project=DataLoader(load_fn=load_projects, cache=cache),
        render=DataLoader(load_fn=load_renders, cache=cache),
        export=DataLoader(load_fn=load_exports, cache=cache),
        proxy_of_version=DataLoader(load_fn=load_proxies, cache=cache),
        export_of_version=DataLoader(load_fn=load_version_exports, cache=cache),
    )


@dataclass
class Context:
    """What every field can reach through ``info.context``."""

    db: Database
    store: MediaStore
    queue: JobQueue
    events: EventSource
    export_preset: Preset
    media_url: Callable[[str], str]
    caller: Actor | None
    # Whether the request carried a token at all (an invalid one is told apart from none).
    token_presented: bool = False
    # A websocket's token is asked again before each operation: it may have been revoked or
    # have expired since the socket opened.
    still_valid: Callable[[Actor], Awaitable[bool]] | None = None
    # A websocket's context lives as long as the socket: its loaders must not cache.
    long_lived: bool = False
    connection_params: dict[str, object] = field(default_factory=dict)
    background: Background = field(default_factory=Background)
    op_limits: ops.Limits = ops.DEFAULT_LIMITS
    _loaders: Loaders | None = field(init=False, default=None, repr=False)

    @property
    def loaders(self) -> Loaders:
        """This request's batching lookups, made when a field first needs one (an idle
        websocket then holds none)."""
        if self._loaders is None:
            self._loaders = make_loaders(self.db, self.caller, cache=not self.long_lived)
        return self._loaders

    def sign_in(self, actor: Actor) -> None:
        """Attach the caller a websocket authenticated with its connection_init payload."""
        self.caller = actor
        self._loaders = None

    def listen(self, project_id: int) -> AbstractAsyncContextManager[AsyncIterator[RenderEvent]]:
        """Live events of a project for this caller; past their subscription limit, entering
        it raises ``SubscriptionLimit`` (RATE_LIMITED)."""
        return self.events.listen(project_id=project_id, user_id=self.actor.id)

    @property
    def actor(self) -> Actor:
        """The authenticated caller; anonymous requests stop here with UNAUTHENTICATED."""
        if self.caller is None:
            raise UnauthenticatedError(self.token_presented)
        return self.caller

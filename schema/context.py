"""The per-request context: database, media store, the caller and the request's loaders."""

from collections.abc import Callable
from dataclasses import dataclass, field

from graphql import GraphQLError
from strawberry.dataloader import DataLoader

from models.db import Database
from models.store import MediaStore
from models.tables import Blob, EditOperation, Export, Project, Render, Video
from resolvers import projects, renders, versions, videos
from resolvers.presets import Preset
from resolvers.queue import JobQueue
from resolvers.users import Actor


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


def make_loaders(db: Database, actor: Actor | None) -> Loaders:
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
        return await renders.renders_of_versions(db=db, kind=renders.PROXY, keys=keys)

    async def load_version_exports(keys: list[tuple[int, int]]) -> list[Export | None]:
        return await renders.exports_of_versions(db=db, keys=keys)

    return Loaders(
        video=DataLoader(load_fn=load_videos),
        blob=DataLoader(load_fn=load_blobs),
        own_ops=DataLoader(load_fn=load_ops),
        project=DataLoader(load_fn=load_projects),
        render=DataLoader(load_fn=load_renders),
        export=DataLoader(load_fn=load_exports),
        proxy_of_version=DataLoader(load_fn=load_proxies),
        export_of_version=DataLoader(load_fn=load_version_exports),
    )


@dataclass
class Context:
    """What every field can reach through ``info.context``."""

    db: Database
    store: MediaStore
    queue: JobQueue
    export_preset: Preset
    media_url: Callable[[str], str]
    caller: Actor | None
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = make_loaders(self.db, self.caller)

    @property
    def actor(self) -> Actor:
        """The authenticated caller; anonymous requests stop here with UNAUTHENTICATED."""
        if self.caller is None:
            raise GraphQLError(
                "sign in: send 'Authorization: Bearer <token>'",
                extensions={"code": "UNAUTHENTICATED"},
            )
        return self.caller

"""Object types: each wraps a row and exposes it under the API's names."""

from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

import strawberry
from strawberry.scalars import JSON

from models import tables
from resolvers import ids, ops, pagination, versions
from schema.context import Context

T = TypeVar("T")
R = TypeVar("R")
Info = strawberry.Info[Context, None]


@strawberry.interface(description="An object with a globally unique id.")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo

    @strawberry.field(description="The nodes of this page, without their cursors.")
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]


def connection(page: pagination.Page[R], wrap: Callable[[R], T]) -> Connection[T]:
    """A Connection over a resolver's page, each row wrapped for the schema."""
    return Connection(
        edges=[Edge(cursor=c, node=wrap(row)) for c, row in page.items],
        page_info=PageInfo(has_next_page=page.has_next, end_cursor=page.end_cursor),
    )


@strawberry.type
class User(Node):
    name: str
    is_admin: bool

    @classmethod
    def from_row(cls, row: tables.User) -> "User":
        assert row.id is not None
        return cls(
            id=strawberry.ID(ids.encode("User", row.id)), name=row.name, is_admin=row.is_admin
        )


@strawberry.type
class Video(Node):
    row: strawberry.Private[tables.Video]
    filename: str
    duration_seconds: float
    width: int
    height: int
    fps: float
    has_audio: bool
    video_codec: str
    audio_codec: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: tables.Video) -> "Video":
        assert row.id is not None
        return cls(
            id=strawberry.ID(ids.encode("Video", row.id)),
            row=row,
            filename=row.filename,
            duration_seconds=row.duration,
            width=row.width,
            height=row.height,
            fps=row.fps,
            has_audio=row.has_audio,
            video_codec=row.video_codec,
            audio_codec=row.audio_codec,
            created_at=row.created_at,
        )

    async def _blob(self, info: Info) -> tables.Blob:
        blob = await info.context.loaders.blob.load(self.row.blob_id)
        assert blob is not None
        return blob

    @strawberry.field(description="SHA-256 of the uploaded bytes.")
    async def sha256(self, info: Info) -> str:
        return (await self._blob(info)).sha256

    @strawberry.field(description="Size of the upload in bytes (Float: GraphQL Int is 32-bit).")
    async def bytes(self, info: Info) -> float:
        return float((await self._blob(info)).bytes)


@strawberry.type
class EditOp:
    type: str
    params: dict[str, Any] = strawberry.field(graphql_type=JSON)

    @classmethod
    def from_row(cls, row: tables.EditOperation) -> "EditOp":
        return cls(type=row.type, params=row.params)


@strawberry.type
class Version:
    row: strawberry.Private[tables.Version]
    number: int
    parent: int | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: tables.Version) -> "Version":
        return cls(row=row, number=row.number, parent=row.parent, created_at=row.created_at)

    @strawberry.field(description="The ops added in this version (empty for a revert).")
    async def ops(self, info: Info) -> list[EditOp]:
        rows = await info.context.loaders.own_ops.load((self.row.project_id, self.row.number))
        return [EditOp.from_row(r) for r in rows]


@strawberry.type
class Project(Node):
    row: strawberry.Private[tables.Project]
    name: str
    current_version: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: tables.Project) -> "Project":
        assert row.id is not None
        return cls(
            id=strawberry.ID(ids.encode("Project", row.id)),
            row=row,
            name=row.name,
            current_version=row.current_version,
            created_at=row.created_at,
        )

    @strawberry.field
    async def source_video(self, info: Info) -> Video:
        video = await info.context.loaders.video.load(self.row.source_video_id)
        assert video is not None
        return Video.from_row(video)

    @strawberry.field
    async def versions(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> Connection[Version]:
        assert self.row.id is not None
        page = await versions.list_versions(
            db=info.context.db,
            project_id=self.row.id,
            first=20 if first is None else first,
            after=after,
        )
        return connection(page, Version.from_row)

    @strawberry.field
    async def version(self, info: Info, number: int) -> Version | None:
        assert self.row.id is not None
        row = await versions.get_version(db=info.context.db, project_id=self.row.id, number=number)
        return Version.from_row(row) if row else None

    @strawberry.field(description="The effective op list at a version (default: current).")
    async def ops(self, info: Info, up_to_version: int | None = None) -> list[EditOp]:
        assert self.row.id is not None
        rows = await versions.effective_ops(
            db=info.context.db,
            actor=info.context.actor,
            project_id=self.row.id,
            up_to=up_to_version,
        )
        return [EditOp.from_row(r) for r in rows]


@strawberry.type(description="One op of the vocabulary and the JSON Schema of its params.")
class OpType:
    name: str
    graphql_field: str
    description: str
    params_schema: dict[str, Any] = strawberry.field(graphql_type=JSON)


def op_types() -> list[OpType]:
    """The vocabulary as clients see it."""
    return [
        OpType(
            name=name,
            graphql_field=ops.graphql_field(name),
            description=model.description,
            params_schema=ops.params_schema(model),
        )
        for name, model in ops.VOCABULARY.items()
    ]

"""Object types: each wraps a row and exposes it under the API's names."""

from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Generic, TypeVar

import strawberry
from strawberry.scalars import JSON

from models import keys, tables
from models.states import GcState, RenderKind, RenderStatus
from resolvers import admin, diffs, ids, ops, pagination, renders, timelines, users, versions
from resolvers.errors import ForbiddenError
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


@strawberry.type(description="A bearer token of a user; the token itself is never shown again.")
class ApiToken(Node):
    label: str
    created_at: datetime
    last_used_at: datetime | None = strawberry.field(description="To the minute.")
    current: bool = strawberry.field(description="Whether this request came with it.")

    @classmethod
    def from_row(cls, row: tables.ApiToken, current_id: int | None) -> "ApiToken":
        assert row.id is not None
        return cls(
            id=strawberry.ID(ids.encode("ApiToken", row.id)),
            label=row.label,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            current=row.id == current_id,
        )


def _own_or_admin(info: "Info", user_id: strawberry.ID) -> int:
    """The user's row id, if the caller is that user or an admin; FORBIDDEN otherwise."""
    actor = info.context.actor
    pk = ids.decode(user_id, "User")
    if pk != actor.id and not actor.is_admin:
        raise ForbiddenError("only the user and administrators see this")
    return pk


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

    @strawberry.field(description="The user's tokens (the user's own, or any for an admin).")
    async def tokens(self, info: "Info") -> list[ApiToken]:
        pk = _own_or_admin(info, self.id)
        rows = await users.tokens_of(db=info.context.db, user_id=pk)
        return [ApiToken.from_row(r, info.context.actor.token_id) for r in rows]

    @strawberry.field(
        description="The user's projects, newest first: one's own, or any user's (deleted ones "
        "too) for an admin."
    )
    async def projects(
        self, info: "Info", first: int | None = 20, after: str | None = None
    ) -> "Connection[Project]":
        pk = _own_or_admin(info, self.id)
        page = await admin.projects_of(
            db=info.context.db,
            user_id=pk,
            first=20 if first is None else first,
            after=after,
            deleted=info.context.actor.is_admin,
        )
        return connection(page, Project.from_row)


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
        return cls(type=row.type, params=ops.shown(row.type, row.params))


# The vocabularies the tables store, defined once in models.states and shown under their
# own names: strawberry marks those very classes as GraphQL enums.
for _vocabulary in (RenderKind, RenderStatus, GcState):
    strawberry.enum(_vocabulary)


def _url(info: Info, key: str | None, done: bool) -> str | None:
    return info.context.media_url(key) if key and done else None


@strawberry.type(description="One proxy or export job of one version, and what it produced.")
class Render(Node):
    row: strawberry.Private[tables.Render]

    @strawberry.field(description="The project it belongs to.")
    def project_id(self) -> strawberry.ID:
        return strawberry.ID(ids.encode("Project", self.row.project_id))

    kind: RenderKind
    version: int
    status: RenderStatus
    progress: float
    width: int | None
    height: int | None
    duration_seconds: float | None
    bytes: float | None
    error: str | None
    attempts: int
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: tables.Render) -> "Render":
        assert row.id is not None
        return cls(
            id=strawberry.ID(ids.encode("Render", row.id)),
            row=row,
            kind=row.kind,
            version=row.version,
            status=row.status,
            progress=row.progress,
            width=row.width,
            height=row.height,
            duration_seconds=row.duration,
            bytes=float(row.bytes) if row.bytes is not None else None,
            error=row.error,
            attempts=row.attempts,
            created_at=row.created_at,
            finished_at=row.finished_at,
        )

    @strawberry.field(description="A signed, expiring link to the file once it is DONE.")
    def url(self, info: Info) -> str | None:
        return _url(info, self.row.output_key, self.row.status == RenderStatus.DONE)

    @strawberry.field(
        description="A proxy's HLS playlist (signed, expiring, like url): it plays from the "
        "first segment on, while the proxy is still rendering (ProxyPlayable says when), "
        "and after. Null for an export, and for a proxy no worker has started."
    )
    def playlist_url(self, info: Info) -> str | None:
        started = self.row.status in (RenderStatus.RUNNING, RenderStatus.DONE)
        if self.row.kind != RenderKind.PROXY or not started or self.row.id is None:
            return None
        return info.context.media_url(keys.playlist(self.row.id))


@strawberry.type(description="A full-resolution export: its render, pin and GC state.")
class Export(Node):
    row: strawberry.Private[tables.Export]

    @strawberry.field(description="The project it belongs to.")
    def project_id(self) -> strawberry.ID:
        return strawberry.ID(ids.encode("Project", self.row.project_id))

    version: int
    pinned: bool
    gc_state: GcState
    created_at: datetime

    @classmethod
    def from_row(cls, row: tables.Export) -> "Export":
        assert row.id is not None
        return cls(
            id=strawberry.ID(ids.encode("Export", row.id)),
            row=row,
            version=row.version,
            pinned=row.pinned,
            gc_state=row.gc_state,
            created_at=row.created_at,
        )

    async def _render(self, info: Info) -> tables.Render:
        render = await info.context.loaders.render.load(self.row.render_id)
        assert render is not None
        return render

    @strawberry.field
    async def render(self, info: Info) -> Render:
        return Render.from_row(await self._render(info))

    @strawberry.field
    async def status(self, info: Info) -> RenderStatus:
        return (await self._render(info)).status

    @strawberry.field
    async def progress(self, info: Info) -> float:
        return (await self._render(info)).progress

    @strawberry.field
    async def bytes(self, info: Info) -> float | None:
        size = (await self._render(info)).bytes
        return float(size) if size is not None else None

    @strawberry.field(description="A signed, expiring link to the file once it is DONE.")
    async def url(self, info: Info) -> str | None:
        render = await self._render(info)
        # Archived or deleted exports have no link: their file left export/ (marking moves
        # nothing, so a marked export still has one).
        live = self.row.gc_state in (GcState.NONE, GcState.MARKED)
        return _url(info, render.output_key, render.status == RenderStatus.DONE and live)

    @strawberry.field(description="Whether this is the project's latest export.")
    async def latest(self, info: Info) -> bool:
        project = await info.context.loaders.project.load(self.row.project_id)
        return project is not None and project.latest_export_id == self.row.id


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

    @strawberry.field(description="The proxy of this version.")
    async def proxy(self, info: Info) -> Render | None:
        key = (self.row.project_id, self.row.number)
        row = await info.context.loaders.proxy_of_version.load(key)
        return Render.from_row(row) if row else None

    @strawberry.field(description="The export of this version, if one was requested.")
    async def export(self, info: Info) -> Export | None:
        key = (self.row.project_id, self.row.number)
        row = await info.context.loaders.export_of_version.load(key)
        return Export.from_row(row) if row else None


@strawberry.type
class Project(Node):
    row: strawberry.Private[tables.Project]
    name: str
    current_version: int
    created_at: datetime
    deleted_at: datetime | None = strawberry.field(
        description="When its owner deleted it (only admins see deleted projects)."
    )

    @classmethod
    def from_row(cls, row: tables.Project) -> "Project":
        assert row.id is not None
        return cls(
            id=strawberry.ID(ids.encode("Project", row.id)),
            row=row,
            name=row.name,
            current_version=row.current_version,
            created_at=row.created_at,
            deleted_at=row.deleted_at,
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

    @strawberry.field(description="The newest finished proxy.")
    async def latest_proxy(self, info: Info) -> Render | None:
        if self.row.latest_proxy_id is None:
            return None
        row = await info.context.loaders.render.load(self.row.latest_proxy_id)
        return Render.from_row(row) if row else None

    @strawberry.field(description="The project's latest export.")
    async def latest_export(self, info: Info) -> Export | None:
        if self.row.latest_export_id is None:
            return None
        row = await info.context.loaders.export.load(self.row.latest_export_id)
        return Export.from_row(row) if row else None

    @strawberry.field(description="Every export of this project, newest version first.")
    async def exports(self, info: Info) -> list[Export]:
        assert self.row.id is not None
        rows = await renders.exports_of_project(
            db=info.context.db, actor=info.context.actor, project_id=self.row.id
        )
        return [Export.from_row(r) for r in rows]

    @strawberry.field(
        description="A version (default: current) as a timeline for another editing tool: "
        "OTIO is lossless; EDL and FCP XML list in `lost` what they cannot hold."
    )
    async def timeline(
        self, info: Info, format: "TimelineFormat", version: int | None = None
    ) -> "Timeline":
        assert self.row.id is not None
        exported = await timelines.export(
            db=info.context.db,
            actor=info.context.actor,
            project_id=self.row.id,
            version=version,
            fmt=format.value,
        )
        return Timeline(format=format, text=exported.text, lost=exported.lost)

    @strawberry.field(description="What changed from one version to another.")
    async def diff(
        self,
        info: Info,
        from_: Annotated[int, strawberry.argument(name="from")],
        to: int,
    ) -> "VersionDiff":
        assert self.row.id is not None
        found = await diffs.diff(
            db=info.context.db,
            actor=info.context.actor,
            project_id=self.row.id,
            from_version=from_,
            to_version=to,
        )
        return VersionDiff.of(found)

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


@strawberry.enum(description="Timeline formats editing tools read.")
class TimelineFormat(Enum):
    OTIO = "OTIO"
    CMX3600_EDL = "CMX3600_EDL"
    FCP_XML = "FCP_XML"


@strawberry.type(description="A version's edit as a timeline file, and what the format lost.")
class Timeline:
    format: TimelineFormat
    text: str = strawberry.field(description="The file itself (OTIO JSON, EDL or FCP XML).")
    lost: list[str] = strawberry.field(
        description='What the format cannot hold, e.g. "blur radius 5 at 0-60 s" (empty for OTIO).'
    )


@strawberry.type(description="An op one side of a diff has beyond their common ancestor.")
class DiffOp:
    index: int = strawberry.field(description="Its place in that side's effective op list.")
    version: int = strawberry.field(description="The version that added it.")
    type: str
    params: dict[str, Any] = strawberry.field(graphql_type=JSON)
    summary: str = strawberry.field(description='In a few words, e.g. "blur radius 5".')


@strawberry.type(description="What changed from one version to another.")
class VersionDiff:
    from_version: int
    to_version: int
    common_ancestor: int = strawberry.field(
        description="The nearest version both descend from (following revert parents)."
    )
    removed: list[DiffOp] = strawberry.field(description="Ops of `from` that `to` lacks.")
    added: list[DiffOp] = strawberry.field(description="Ops of `to` that `from` lacks.")
    summary: list[str] = strawberry.field(
        description='Plain-language lines: "removed: the ops of v3-v5", "blur radius 5 added".'
    )

    @classmethod
    def of(cls, found: diffs.Diff) -> "VersionDiff":
        def side(changes: list[diffs.Change]) -> list[DiffOp]:
            return [
                DiffOp(
                    index=c.index,
                    version=c.version,
                    type=c.type,
                    params=c.params,
                    summary=c.summary,
                )
                for c in changes
            ]

        return cls(
            from_version=found.from_version,
            to_version=found.to_version,
            common_ancestor=found.common_ancestor,
            removed=side(found.removed),
            added=side(found.added),
            summary=found.summary,
        )


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

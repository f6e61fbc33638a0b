"""The Mutation root: uploads, projects and the edit log. A field's expected failures
are members of its result union (schema/errors.py turns the domain errors into them)."""

from typing import Annotated

import strawberry
from strawberry.file_uploads import Upload

from models import tables
from models.store import StagedFile, UploadTooLarge
from resolvers import ids, projects, renders, users, versions, videos
from resolvers.errors import InvalidMediaError, TooLargeError
from schema.admin import AccountMutation
from schema.errors import InvalidMedia, InvalidOps, NotFound, TooLarge, VersionConflict, VideoInUse
from schema.gc import GcMutation
from schema.inputs import OpInput, to_raw
from schema.permissions import IsAdmin
from schema.types import Export, Info, Project, Render, User, Version, Video


@strawberry.type
class VideoUploaded:
    video: Video
    deduplicated: bool


@strawberry.type
class VideoDeleted:
    id: strawberry.ID


@strawberry.type
class ProjectCreated:
    project: Project


@strawberry.type
class ProjectRenamed:
    project: Project


@strawberry.type(
    description="The project is gone: its renders and unpinned exports are left to the GC."
)
class ProjectDeleted:
    id: strawberry.ID


@strawberry.type
class OpsAppended:
    project: Project
    version: Version
    proxy: Render | None


@strawberry.type
class ExportQueued:
    export: Export


@strawberry.type(description="The proxy asked for: finished, or queued to render again.")
class ProxyRequested:
    render: Render


@strawberry.type
class CancelRequested:
    render: Render


@strawberry.type(description="A new account; the token is shown this once.")
class UserCreated:
    user: User
    token: str


UploadVideoResult = Annotated[
    VideoUploaded | InvalidMedia | TooLarge, strawberry.union("UploadVideoResult")
]
DeleteVideoResult = Annotated[
    VideoDeleted | VideoInUse | NotFound, strawberry.union("DeleteVideoResult")
]
CreateProjectResult = Annotated[ProjectCreated | NotFound, strawberry.union("CreateProjectResult")]
RenameProjectResult = Annotated[ProjectRenamed | NotFound, strawberry.union("RenameProjectResult")]
DeleteProjectResult = Annotated[ProjectDeleted | NotFound, strawberry.union("DeleteProjectResult")]
AppendOpsResult = Annotated[
    OpsAppended | VersionConflict | InvalidOps | NotFound, strawberry.union("AppendOpsResult")
]
RequestExportResult = Annotated[ExportQueued | NotFound, strawberry.union("RequestExportResult")]
CancelResult = Annotated[CancelRequested | NotFound, strawberry.union("CancelResult")]
RequestProxyResult = Annotated[ProxyRequested | NotFound, strawberry.union("RequestProxyResult")]


def _appended(
    project: tables.Project, version: tables.Version, proxy: tables.Render
) -> OpsAppended:
    return OpsAppended(
        project=Project.from_row(project),
        version=Version.from_row(version),
        proxy=Render.from_row(proxy),
    )


@strawberry.type
class Mutation(GcMutation, AccountMutation):
    @strawberry.mutation(description="Upload a video (GraphQL multipart request).")
    async def upload_video(self, info: Info, file: Upload) -> UploadVideoResult:
        actor = info.context.actor
        staged: object = file
        if isinstance(staged, UploadTooLarge):
            raise TooLargeError(staged.limit)
        if not isinstance(staged, StagedFile):
            raise InvalidMediaError("send the file as a multipart upload")
        video, dedup = await videos.upload_video(
            db=info.context.db,
            store=info.context.store,
            queue=info.context.queue,
            actor=actor,
            staged=staged,
        )
        return VideoUploaded(video=Video.from_row(video), deduplicated=dedup)

    @strawberry.mutation(description="Delete a video no project uses; its bytes go to the GC.")
    async def delete_video(self, info: Info, id: strawberry.ID) -> DeleteVideoResult:
        await videos.delete_video(
            db=info.context.db, actor=info.context.actor, video_id=ids.decode(id, "Video")
        )
        return VideoDeleted(id=id)

    @strawberry.mutation
    async def create_project(
        self, info: Info, video_id: strawberry.ID, name: str
    ) -> CreateProjectResult:
        project = await versions.create_project(
            db=info.context.db,
            queue=info.context.queue,
            actor=info.context.actor,
            video_id=ids.decode(video_id, "Video"),
            name=name,
        )
        return ProjectCreated(project=Project.from_row(project))

    @strawberry.mutation
    async def rename_project(self, info: Info, id: strawberry.ID, name: str) -> RenameProjectResult:
        project = await projects.rename_project(
            db=info.context.db,
            actor=info.context.actor,
            project_id=ids.decode(id, "Project"),
            name=name,
        )
        return ProjectRenamed(project=Project.from_row(project))

    @strawberry.mutation(
        description="Delete a project: its renders stop, its videos become deletable, and its "
        "exports go to the GC; pinned ones stay until unpinned (setExportPinned still works)."
    )
    async def delete_project(self, info: Info, id: strawberry.ID) -> DeleteProjectResult:
        await projects.delete_project(
            db=info.context.db,
            queue=info.context.queue,
            actor=info.context.actor,
            project_id=ids.decode(id, "Project"),
        )
        return ProjectDeleted(id=id)

    @strawberry.mutation(description="Append a batch of ops as one new version, atomically.")
    async def append_ops(
        self,
        info: Info,
        project_id: strawberry.ID,
        ops: list[OpInput],
        expected_version: int | None = None,
    ) -> AppendOpsResult:
        project, version, proxy = await versions.append_ops(
            db=info.context.db,
            queue=info.context.queue,
            actor=info.context.actor,
            project_id=ids.decode(project_id, "Project"),
            raw_ops=[to_raw(op) for op in ops],
            expected_version=expected_version,
            limits=info.context.op_limits,
        )
        return _appended(project, version, proxy)

    @strawberry.mutation(description="Undo to an older version, as a new version: history stays.")
    async def revert_to_version(
        self,
        info: Info,
        project_id: strawberry.ID,
        version: int,
        expected_version: int | None = None,
    ) -> AppendOpsResult:
        project, new, proxy = await versions.revert_to_version(
            db=info.context.db,
            queue=info.context.queue,
            actor=info.context.actor,
            project_id=ids.decode(project_id, "Project"),
            version=version,
            expected_version=expected_version,
        )
        return _appended(project, new, proxy)

    @strawberry.mutation(description="Render a version at full resolution (default: current).")
    async def request_export(
        self, info: Info, project_id: strawberry.ID, version: int | None = None
    ) -> RequestExportResult:
        export, _ = await renders.request_export(
            db=info.context.db,
            queue=info.context.queue,
            actor=info.context.actor,
            project_id=ids.decode(project_id, "Project"),
            version=version,
            preset=info.context.export_preset,
        )
        return ExportQueued(export=Export.from_row(export))

    @strawberry.mutation(
        description="The 480p proxy of a version (default: current); one the GC reclaimed, or "
        "that failed, renders again."
    )
    async def request_proxy(
        self, info: Info, project_id: strawberry.ID, version: int | None = None
    ) -> RequestProxyResult:
        render = await renders.request_proxy(
            db=info.context.db,
            queue=info.context.queue,
            actor=info.context.actor,
            project_id=ids.decode(project_id, "Project"),
            version=version,
        )
        return ProxyRequested(render=Render.from_row(render))

    @strawberry.mutation(description="Cancel a queued or running render; its ffmpeg is stopped.")
    async def cancel_render(self, info: Info, id: strawberry.ID) -> CancelResult:
        render = await renders.cancel_render(
            db=info.context.db,
            queue=info.context.queue,
            actor=info.context.actor,
            render_id=ids.decode(id, "Render"),
        )
        return CancelRequested(render=Render.from_row(render))

    @strawberry.mutation(
        permission_classes=[IsAdmin], description="Create an account (admin only)."
    )
    async def create_user(self, info: Info, name: str, is_admin: bool = False) -> UserCreated:
        user, token = await users.create_user(db=info.context.db, name=name, is_admin=is_admin)
        return UserCreated(user=User.from_row(user), token=token)

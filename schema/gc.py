"""Export pinning and the admin GC fields: candidates, mark, archive, delete, restore, usage."""

from typing import Annotated

import strawberry
from graphql import GraphQLError

from resolvers import gc, ids
from resolvers.errors import NotFoundError
from schema.errors import NotFound
from schema.permissions import IsAdmin
from schema.types import Export, Info, Video


@strawberry.type(description="What the mark stage would flag now (a dry run).")
class GcReport:
    exports: list[Export] = strawberry.field(description="The first 100 of them.")
    count: int
    bytes: float
    stale_proxies: int = strawberry.field(
        description="Finished proxies of versions that are no longer current."
    )
    stale_proxy_bytes: float


@strawberry.type(description="What one GC action did.")
class GcRun:
    id: strawberry.ID
    action: str
    marked: int
    archived: int
    deleted: int
    restored: int
    bytes: float
    exports: list[Export]

    @classmethod
    def of(cls, outcome: gc.GcOutcome) -> "GcRun":
        return cls(
            id=strawberry.ID(outcome.run_id),
            action=outcome.action,
            marked=outcome.marked,
            archived=outcome.archived,
            deleted=outcome.deleted,
            restored=outcome.restored,
            bytes=float(outcome.bytes),
            exports=[Export.from_row(e) for e in outcome.exports[:100]],
        )


@strawberry.type
class AreaUsage:
    bytes: float
    files: int


@strawberry.type(description="Bytes and files per area of the media root.")
class StorageUsage:
    videos: AreaUsage
    proxy: AreaUsage
    export: AreaUsage
    archive: AreaUsage
    temp: AreaUsage


@strawberry.type
class ExportPinned:
    export: Export


@strawberry.type
class ExportRestored:
    export: Export


PinResult = Annotated[ExportPinned | NotFound, strawberry.union("PinResult")]
GcRestoreResult = Annotated[ExportRestored | NotFound, strawberry.union("GcRestoreResult")]


def _confirmed(confirm: bool) -> None:
    if not confirm:
        raise GraphQLError(
            "permanent deletion needs confirm: true; nothing was deleted",
            extensions={"code": "CONFIRMATION_REQUIRED"},
        )


@strawberry.type
class GcQuery:
    @strawberry.field(permission_classes=[IsAdmin])
    async def gc_candidates(self, info: Info, days_old: int = 30, keep_latest: int = 1) -> GcReport:
        rows, count, size = await gc.candidates(
            db=info.context.db, days_old=days_old, keep_latest=keep_latest
        )
        proxies, proxy_bytes = await gc.stale_proxies(db=info.context.db, days_old=days_old)
        return GcReport(
            exports=[Export.from_row(e) for e, _ in rows],
            count=count,
            bytes=float(size),
            stale_proxies=proxies,
            stale_proxy_bytes=float(proxy_bytes),
        )

    @strawberry.field(permission_classes=[IsAdmin])
    async def unused_videos(self, info: Info) -> list[Video]:
        return [Video.from_row(v) for v in await gc.unused_videos(db=info.context.db)]

    @strawberry.field(permission_classes=[IsAdmin])
    def storage_usage(self, info: Info) -> StorageUsage:
        usage = {
            k: AreaUsage(bytes=float(b), files=n)
            for k, (b, n) in gc.storage_usage(info.context.store).items()
        }
        return StorageUsage(**usage)


@strawberry.type
class GcMutation:
    @strawberry.mutation(
        description="Pin (keep forever) or unpin an export; pinning an archived one restores it."
    )
    async def set_export_pinned(
        self, info: Info, project_id: strawberry.ID, version: int, pinned: bool
    ) -> PinResult:
        try:
            export = await gc.set_pinned(
                db=info.context.db,
                store=info.context.store,
                actor=info.context.actor,
                project_id=ids.decode(project_id, "Project"),
                version=version,
                pinned=pinned,
            )
        except NotFoundError as e:
            return NotFound.of(e)
        return ExportPinned(export=Export.from_row(export))

    @strawberry.mutation(permission_classes=[IsAdmin])
    async def gc_mark(self, info: Info, days_old: int = 30, keep_latest: int = 1) -> GcRun:
        return GcRun.of(
            await gc.mark(
                db=info.context.db,
                actor=info.context.actor,
                days_old=days_old,
                keep_latest=keep_latest,
            )
        )

    @strawberry.mutation(permission_classes=[IsAdmin])
    async def gc_archive(self, info: Info) -> GcRun:
        return GcRun.of(
            await gc.archive(db=info.context.db, store=info.context.store, actor=info.context.actor)
        )

    @strawberry.mutation(permission_classes=[IsAdmin])
    async def gc_delete(self, info: Info, confirm: bool, days_in_archive: int = 30) -> GcRun:
        _confirmed(confirm)
        outcome = await gc.delete(
            db=info.context.db,
            store=info.context.store,
            actor=info.context.actor,
            days_in_archive=days_in_archive,
            confirm=confirm,
        )
        return GcRun.of(outcome)

    @strawberry.mutation(permission_classes=[IsAdmin])
    async def gc_restore(self, info: Info, export_id: strawberry.ID) -> GcRestoreResult:
        try:
            export = await gc.restore(
                db=info.context.db,
                store=info.context.store,
                actor=info.context.actor,
                export_id=ids.decode(export_id, "Export"),
            )
        except NotFoundError as e:
            return NotFound.of(e)
        return ExportRestored(export=Export.from_row(export))

    @strawberry.mutation(permission_classes=[IsAdmin])
    async def gc_full_cycle(
        self, info: Info, confirm: bool, days_old: int = 30, days_in_archive: int = 30
    ) -> GcRun:
        _confirmed(confirm)
        outcome = await gc.full_cycle(
            db=info.context.db,
            store=info.context.store,
            actor=info.context.actor,
            days_old=days_old,
            days_in_archive=days_in_archive,
            confirm=confirm,
        )
        return GcRun.of(outcome)

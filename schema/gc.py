"""Export pinning and the admin GC fields: candidates, mark, archive, delete, restore, usage."""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import strawberry

from models import tables
from models.states import GcRunStatus
from resolvers import exports, gc, gc_policy, gc_runs, gc_segments, ids
from resolvers.errors import ConfirmationRequiredError, NotFoundError
from resolvers.gc_runs import Reporter
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
    reclaimable_segments: int = strawberry.field(
        description="Proxy segments no proxy a project shows lists and none has used for "
        "segmentDaysOld days; gcDelete and gcFullCycle delete them (no archive stage)."
    )
    reclaimable_segment_bytes: float


strawberry.enum(GcRunStatus, description="Where a GC run is: it holds the GC lock while RUNNING.")


@strawberry.type(
    description="One GC stage or full cycle. Long ones run in the background: follow "
    "`status` and `done`/`total` with `gcRun(id)`."
)
class GcRun:
    row: strawberry.Private[tables.GcRun]
    id: strawberry.ID
    action: str
    status: GcRunStatus
    holder: str = strawberry.field(description="Who started it.")
    done: int = strawberry.field(description="Exports worked through so far.")
    total: int = strawberry.field(description="Exports this run will work through.")
    marked: int
    archived: int
    deleted: int
    proxies_reclaimed: int = strawberry.field(
        description="Proxies of old versions whose files it took back (requestProxy renders "
        "one again)."
    )
    restored: int
    bytes: float = strawberry.field(
        deprecation_reason="bytesFreed: archiving frees nothing, and bytes count once"
    )
    bytes_marked: float = strawberry.field(description="Bytes of the exports it marked.")
    bytes_moved: float = strawberry.field(
        description="Bytes of the exports that got a new name (archived, or restored)."
    )
    bytes_freed: float = strawberry.field(
        description="Bytes the disk got back: a file counts once, when its last name goes "
        "(an export sharing its file with another frees nothing)."
    )
    error: str | None
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: tables.GcRun) -> "GcRun":
        assert row.id is not None
        return cls(
            row=row,
            id=strawberry.ID(str(row.id)),
            action=row.action,
            status=GcRunStatus(row.status),
            holder=row.holder,
            done=row.done,
            total=row.total,
            marked=row.marked,
            archived=row.archived,
            deleted=row.deleted,
            proxies_reclaimed=row.proxies_reclaimed,
            restored=0,
            bytes=float(row.bytes_freed),
            bytes_marked=float(row.bytes_marked),
            bytes_moved=float(row.bytes_moved),
            bytes_freed=float(row.bytes_freed),
            error=row.error,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )

    @strawberry.field(description="The first 100 exports it changed (the audit has them all).")
    async def exports(self, info: Info) -> list[Export]:
        rows = await gc_runs.exports_of_run(db=info.context.db, run_id=int(self.id))
        return [Export.from_row(e) for e in rows]


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
    segments: AreaUsage = strawberry.field(
        description="Proxy segments, stored once per content key (derived: the GC reclaims "
        "unused ones without an archive stage)."
    )
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
        raise ConfirmationRequiredError()


async def _start(
    info: Info, action: str, params: dict[str, Any], stage: Callable[[Reporter], Awaitable[object]]
) -> GcRun:
    """Take the GC lock (``GC_BUSY`` if held) and run the stage in the background."""
    context = info.context
    run = await gc_runs.acquire(
        db=context.db,
        action=action,
        actor=context.actor,
        holder=gc_runs.holder_of(context.actor, "api"),
        params=params,
    )

    async def work(reporter: Reporter) -> None:
        await stage(reporter)

    context.background.spawn(gc_runs.execute(context.db, run, work))
    return GcRun.of(run)


@strawberry.type
class GcQuery:
    @strawberry.field(permission_classes=[IsAdmin])
    async def gc_candidates(
        self,
        info: Info,
        days_old: int = 30,
        keep_latest: int = 1,
        segment_days_old: int = gc_segments.DAYS_OLD,
    ) -> GcReport:
        gc_policy.check_days(segmentDaysOld=segment_days_old)
        rows, count, size = await gc_policy.candidates(
            db=info.context.db, days_old=days_old, keep_latest=keep_latest
        )
        proxies, proxy_bytes = await gc_policy.stale_proxies(db=info.context.db, days_old=days_old)
        segments = await gc_segments.reclaimable(db=info.context.db, days_old=segment_days_old)
        return GcReport(
            exports=[Export.from_row(e) for e, _ in rows],
            count=count,
            bytes=float(size),
            stale_proxies=proxies,
            stale_proxy_bytes=float(proxy_bytes),
            reclaimable_segments=segments.count,
            reclaimable_segment_bytes=float(segments.bytes),
        )

    @strawberry.field(permission_classes=[IsAdmin], description="One GC run, to follow it.")
    async def gc_run(self, info: Info, id: strawberry.ID) -> GcRun | None:
        try:
            run_id = int(id)
        except ValueError:
            return None
        try:
            return GcRun.of(await gc_runs.get_run(db=info.context.db, run_id=run_id))
        except NotFoundError:
            return None

    @strawberry.field(permission_classes=[IsAdmin], description="Recent GC runs, newest first.")
    async def gc_runs(self, info: Info, first: int = 20) -> list[GcRun]:
        return [GcRun.of(r) for r in await gc_runs.recent_runs(db=info.context.db, first=first)]

    @strawberry.field(permission_classes=[IsAdmin])
    async def unused_videos(self, info: Info) -> list[Video]:
        return [Video.from_row(v) for v in await gc_policy.unused_videos(db=info.context.db)]

    @strawberry.field(permission_classes=[IsAdmin])
    def storage_usage(self, info: Info) -> StorageUsage:
        usage = {
            k: AreaUsage(bytes=float(b), files=n)
            for k, (b, n) in gc_policy.storage_usage(info.context.store).items()
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
            export = await exports.set_pinned(
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

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Flag old, unpinned, non-latest exports MARKED; answers when done.",
    )
    async def gc_mark(self, info: Info, days_old: int = 30, keep_latest: int = 1) -> GcRun:
        context = info.context
        gc_policy.check_rules(days_old=days_old, keep_latest=keep_latest)  # before the lock
        run = await gc_runs.acquire(
            db=context.db,
            action="mark",
            actor=context.actor,
            holder=gc_runs.holder_of(context.actor, "api"),
            params={"daysOld": days_old, "keepLatest": keep_latest},
        )

        async def work(reporter: Reporter) -> None:
            await gc.mark(
                db=context.db,
                actor=context.actor,
                days_old=days_old,
                keep_latest=keep_latest,
                reporter=reporter,
            )

        return GcRun.of(await gc_runs.execute(context.db, run, work))

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Move MARKED exports to archive/, in the background.",
    )
    async def gc_archive(self, info: Info) -> GcRun:
        context = info.context

        async def stage(reporter: Reporter) -> object:
            return await gc.archive(
                db=context.db, store=context.store, actor=context.actor, reporter=reporter
            )

        return await _start(info, "archive", {}, stage)

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Delete archived exports past the retention, and take back the files of "
        "proxies of old versions and of proxy segments nothing uses, in the background.",
    )
    async def gc_delete(
        self,
        info: Info,
        confirm: bool,
        days_in_archive: int = 30,
        proxy_days_old: int = 30,
        segment_days_old: int = gc_segments.DAYS_OLD,
    ) -> GcRun:
        _confirmed(confirm)
        gc_policy.check_days(
            daysInArchive=days_in_archive,
            proxyDaysOld=proxy_days_old,
            segmentDaysOld=segment_days_old,
        )
        context = info.context

        async def stage(reporter: Reporter) -> object:
            return await gc.delete(
                db=context.db,
                store=context.store,
                actor=context.actor,
                days_in_archive=days_in_archive,
                proxy_days_old=proxy_days_old,
                segment_days_old=segment_days_old,
                confirm=confirm,
                reporter=reporter,
            )

        params = {
            "daysInArchive": days_in_archive,
            "proxyDaysOld": proxy_days_old,
            "segmentDaysOld": segment_days_old,
        }
        return await _start(info, "delete", params, stage)

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

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description="Mark, archive and delete in one run, in the background.",
    )
    async def gc_full_cycle(
        self,
        info: Info,
        confirm: bool,
        days_old: int = 30,
        keep_latest: int = 1,
        days_in_archive: int = 30,
    ) -> GcRun:
        _confirmed(confirm)
        gc_policy.check_rules(days_old=days_old, keep_latest=keep_latest)
        gc_policy.check_days(daysInArchive=days_in_archive)
        context = info.context

        async def stage(reporter: Reporter) -> object:
            return await gc.full_cycle(
                db=context.db,
                store=context.store,
                actor=context.actor,
                days_old=days_old,
                keep_latest=keep_latest,
                days_in_archive=days_in_archive,
                confirm=confirm,
                reporter=reporter,
            )

        params = {"daysOld": days_old, "keepLatest": keep_latest, "daysInArchive": days_in_archive}
        return await _start(info, "full-cycle", params, stage)

"""Undoing an import run (``editgraph import undo RUN_ID``): what the run created goes, as
long as nobody built on it since (a newer version of one of its projects, a video of it used
by another project); otherwise nothing is removed and the blockers are named."""

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import delete as delete_rows
from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import Database
from models.store import MediaStore
from models.tables import (
    ApiToken,
    Blob,
    EditOperation,
    Export,
    GcAudit,
    ImportOrigin,
    ImportRun,
    PlanSegment,
    Project,
    ProxyPlan,
    Render,
    User,
    Version,
    Video,
    utcnow,
)
from resolvers import ids
from resolvers.import_records import KINDS
from resolvers.imports import stopped


@dataclass
class Undone:
    """What an undo removed, or why it could not."""

    blocked: list[str] = field(default_factory=list)
    removed: Counter[str] = field(default_factory=Counter)


async def undo(*, db: Database, store: MediaStore, run_id: int) -> Undone:
    """Remove what run ``run_id`` created, unless someone built on it since; say who did.
    Built on: a newer version of one of its projects, an export or a pin change there, a
    video of it that another project uses or its owner uploaded again."""
    result = Undone()
    async with db.read() as session:
        run_row = await session.get(ImportRun, run_id)
        if run_row is None or run_row.status == "undone":
            result.blocked.append(f"import run {run_id} is not there, or was undone already")
            return result
        if run_row.status == "running" and not stopped(run_row):
            result.blocked.append(f"import run {run_id} is still running")
            return result
        origins = list(
            (await session.exec(select(ImportOrigin).where(ImportOrigin.run_id == run_id))).all()
        )
        made: dict[str, set[int]] = {kind: set() for kind in KINDS}
        for origin in origins:
            made[origin.kind].add(origin.target_id)
        imported_at = {o.target_id: o.version for o in origins if o.kind == "project"}
        result.blocked += await _built_on(session, run_row, made, imported_at)
    if result.blocked:
        return result
    for project_id in sorted(made["project"]):
        result.removed += await _remove_project(db, store, project_id)
    async with db.write() as session:
        blobs: set[int] = set()
        for video_id in sorted(made["video"]):
            video = await session.get(Video, video_id)
            if video is None:
                continue
            # Only videos this run created: a duplicate it found names an older video.
            created_here = (
                await session.exec(
                    select(ImportOrigin.id).where(
                        ImportOrigin.kind == "video",
                        ImportOrigin.target_id == video_id,
                        ImportOrigin.run_id != run_id,
                    )
                )
            ).first() is None and video.created_at >= run_row.started_at
            if not created_here:
                continue
            await session.delete(video)
            blobs.add(video.blob_id)
            result.removed["video"] += 1
        await session.flush()
        for blob_id in blobs:  # counted again from the videos left, never decremented blind
            live = (
                await session.exec(
                    select(func.count(col(Video.id))).where(
                        Video.blob_id == blob_id, col(Video.deleted_at).is_(None)
                    )
                )
            ).one()
            blob = await session.get(Blob, blob_id, with_for_update=True)
            if blob is not None:
                blob.ref_count = live
                if live == 0 and blob.unreferenced_at is None:
                    blob.unreferenced_at = utcnow()  # the GC's grace period starts
                session.add(blob)
        for user_id in sorted(made["user"]):
            owns = (await session.exec(select(Video.id).where(Video.owner_id == user_id))).first()
            owns = (
                owns
                or (
                    await session.exec(select(Project.id).where(Project.owner_id == user_id))
                ).first()
            )
            owns = (
                owns
                or (
                    await session.exec(select(ApiToken.id).where(ApiToken.user_id == user_id))
                ).first()
            )
            if owns is None:
                user = await session.get(User, user_id)
                if user is not None:
                    await session.delete(user)
                    result.removed["user"] += 1
        await session.exec(delete_rows(ImportOrigin).where(col(ImportOrigin.run_id) == run_id))
        await session.exec(
            update(ImportRun).where(col(ImportRun.id) == run_id).values(status="undone")
        )
    return result


async def _built_on(
    session: AsyncSession,
    run_row: ImportRun,
    made: dict[str, set[int]],
    imported_at: dict[int, int | None],
) -> list[str]:
    """What users did with a run's rows since it ran, each said plainly (empty: nothing)."""
    found: list[str] = []
    projects = list(
        (await session.exec(select(Project).where(col(Project.id).in_(made["project"])))).all()
    )
    for project in projects:
        assert project.id is not None
        if project.current_version != imported_at.get(project.id):
            found.append(
                f"project {ids.encode('Project', project.id)} ({project.name}) has versions "
                "newer than the import"
            )
    later_exports = (
        await session.exec(
            select(Export.project_id).where(
                col(Export.project_id).in_(made["project"]),
                col(Export.id).not_in(made["export"]),
            )
        )
    ).all()
    for project_id in sorted(set(later_exports)):
        found.append(
            f"project {ids.encode('Project', project_id)} has an export made after the import"
        )
    pins = (
        await session.exec(
            select(GcAudit.export_id).where(
                col(GcAudit.export_id).in_(made["export"]),
                col(GcAudit.action).in_(("pin", "unpin")),
                col(GcAudit.at) >= run_row.started_at,
            )
        )
    ).all()
    for export_id in sorted({e for e in pins if e is not None}):
        found.append(f"export {ids.encode('Export', export_id)} was pinned or unpinned since")
    users: list[tuple[int | None, int | None]] = list(
        (
            await session.exec(
                select(Project.id, Project.source_video_id).where(
                    col(Project.source_video_id).in_(made["video"]),
                    col(Project.id).not_in(made["project"]),
                )
            )
        ).all()
    )
    users += (
        await session.exec(
            select(EditOperation.project_id, EditOperation.video_id).where(
                col(EditOperation.video_id).in_(made["video"]),
                col(EditOperation.project_id).not_in(made["project"]),
            )
        )
    ).all()
    for user_project, video_id in sorted(set(users), key=str):
        found.append(
            f"project {ids.encode('Project', user_project or 0)} uses video "
            f"{ids.encode('Video', video_id or 0)} of this import"
        )
    again = (
        await session.exec(
            select(Video.id).where(
                col(Video.id).in_(made["video"]), col(Video.uploaded_at) >= run_row.started_at
            )
        )
    ).all()
    for video_id in sorted(v for v in again if v is not None):
        found.append(f"video {ids.encode('Video', video_id)} was uploaded again by its owner")
    return found


async def _remove_project(db: Database, store: MediaStore, project_id: int) -> Counter[str]:
    """Every row and file of one imported project."""
    removed: Counter[str] = Counter()
    async with db.write() as session:
        renders_of = list(
            (await session.exec(select(Render).where(Render.project_id == project_id))).all()
        )
        render_ids = [r.id for r in renders_of if r.id is not None]
        exports_of = list(
            (await session.exec(select(Export).where(Export.project_id == project_id))).all()
        )
        files = {r.output_key for r in renders_of if r.output_key}
        files |= {e.archive_key for e in exports_of if e.archive_key}
        await session.exec(delete_rows(Export).where(col(Export.project_id) == project_id))
        await session.exec(
            delete_rows(PlanSegment).where(col(PlanSegment.render_id).in_(render_ids))
        )
        await session.exec(delete_rows(ProxyPlan).where(col(ProxyPlan.render_id).in_(render_ids)))
        await session.exec(delete_rows(Render).where(col(Render.project_id) == project_id))
        removed["op"] = len(
            (
                await session.exec(
                    select(EditOperation.id).where(EditOperation.project_id == project_id)
                )
            ).all()
        )
        await session.exec(
            delete_rows(EditOperation).where(col(EditOperation.project_id) == project_id)
        )
        removed["version"] = len(
            (await session.exec(select(Version.id).where(Version.project_id == project_id))).all()
        )
        await session.exec(delete_rows(Version).where(col(Version.project_id) == project_id))
        await session.exec(delete_rows(Project).where(col(Project.id) == project_id))
        removed["export"] = len(exports_of)
        removed["project"] = 1
    for key in files:
        await asyncio.to_thread(store.remove, key)
    return removed

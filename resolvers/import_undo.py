"""Undoing an import run (``editgraph import undo RUN_ID``): what the run created goes, as
long as nobody built on it since (a newer version of one of its projects, a video of it used
by another project); otherwise nothing is removed and the blockers are named."""

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import delete as delete_rows
from sqlalchemy import update
from sqlmodel import col, select

from models.db import Database
from models.store import MediaStore
from models.tables import (
    ApiToken,
    Blob,
    EditOperation,
    Export,
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


@dataclass
class Undone:
    """What an undo removed, or why it could not."""

    blocked: list[str] = field(default_factory=list)
    removed: Counter[str] = field(default_factory=Counter)


async def undo(*, db: Database, store: MediaStore, run_id: int) -> Undone:
    """Remove what run ``run_id`` created, unless someone built on it since: a project with
    a newer version, or a video another project uses. Says which projects block it."""
    result = Undone()
    async with db.read() as session:
        run_row = await session.get(ImportRun, run_id)
        if run_row is None or run_row.status == "undone":
            result.blocked.append(f"import run {run_id} is not there, or was undone already")
            return result
        origins = list(
            (await session.exec(select(ImportOrigin).where(ImportOrigin.run_id == run_id))).all()
        )
    made: dict[str, set[int]] = {kind: set() for kind in KINDS}
    for origin in origins:
        made[origin.kind].add(origin.target_id)
    imported_at = {int(k): v for k, v in run_row.summary.get("versions", {}).items()}
    async with db.read() as session:
        for project in (
            await session.exec(select(Project).where(col(Project.id).in_(made["project"])))
        ).all():
            assert project.id is not None
            if project.current_version != imported_at.get(project.id, project.current_version):
                public = ids.encode("Project", project.id)
                result.blocked.append(
                    f"project {public} ({project.name}) has versions newer than the import"
                )
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
        for project_id, video_id in users:
            result.blocked.append(
                f"project {ids.encode('Project', project_id or 0)} uses video "
                f"{ids.encode('Video', video_id or 0)} of this import"
            )
    if result.blocked:
        return result
    for project_id in sorted(made["project"]):
        result.removed += await _remove_project(db, store, project_id)
    async with db.write() as session:
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
            await session.exec(
                update(Blob)
                .where(col(Blob.id) == video.blob_id)
                .values(ref_count=col(Blob.ref_count) - 1)
            )
            blob = await session.get(Blob, video.blob_id, populate_existing=True)
            if blob is not None and blob.ref_count <= 0:
                blob.unreferenced_at = utcnow()  # the GC's grace period starts
                session.add(blob)
            result.removed["video"] += 1
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

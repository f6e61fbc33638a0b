"""Finished exports on disk, and what the GC left of them, for GC tests at every level."""

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import col, select

from jobs.events import EventLog
from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from models.tables import Export, Project, Render, utcnow
from resolvers import gc, lifecycle, renders, versions
from resolvers.presets import export_preset
from resolvers.probe import Probe
from resolvers.users import Actor
from tests.helpers.domain import new_project


@dataclass
class Setup:
    project_id: int
    exports: dict[int, Export]  # by version


async def exports_on_disk(
    db: Database, queue: ArqQueue, store: MediaStore, actor: Actor, source: Path, count: int = 4
) -> Setup:
    """A project with ``count`` finished exports (v1..vN, 40 days old), the last one latest."""
    project = await new_project(db, queue, store, actor, source)
    assert project.id is not None
    made: dict[int, Export] = {}
    for n in range(1, count + 1):
        await versions.append_ops(
            db=db,
            queue=queue,
            actor=actor,
            project_id=project.id,
            raw_ops=[{"type": "brightness", "params": {"brightness": n}}],
            expected_version=None,
        )
        export, render = await renders.request_export(
            db=db,
            queue=queue,
            actor=actor,
            project_id=project.id,
            version=n,
            preset=export_preset(crf=20, x264_preset="fast"),
        )
        key = renders.output_key("export", project.id, n)
        store.write_bytes(key, b"export-%d" % n * 100)
        async with db.write() as s:
            await s.exec(
                update(Render)
                .where(col(Render.id) == render.id)
                .values(status="done", output_key=key, bytes=len(b"export-%d" % n * 100))
            )
            await s.exec(
                update(Export)
                .where(col(Export.id) == export.id)
                .values(created_at=utcnow() - timedelta(days=40))
            )
            await s.exec(
                update(Project)
                .where(col(Project.id) == project.id)
                .values(latest_export_id=export.id)
            )
        made[n] = export
    return Setup(project.id, made)


async def states(db: Database) -> dict[int, str]:
    async with db.read() as s:
        return {e.version: e.gc_state for e in (await s.exec(select(Export))).all()}


def on_disk(store: MediaStore) -> set[str]:
    """Every stored export and archive file (on disk or in the bucket)."""
    return {e.key for a in ("export", "archive") for e in store.listing(a)}


async def consistent(db: Database, store: MediaStore) -> None:
    """No row points at a missing file, and no file is unreachable."""
    expected: set[str] = set()
    async with db.read() as s:
        for export, render in (
            await s.exec(select(Export, Render).join(Render, col(Render.id) == Export.render_id))
        ).all():
            if export.gc_state in ("none", "marked") and render.output_key:
                expected.add(render.output_key)
            elif export.gc_state == "archived":
                expected.add(gc.archive_key(export))
    assert on_disk(store) == expected


FINISHED = Probe(
    demuxer="mov,mp4,m4a,3gp,3g2,mj2",
    extension="mp4",
    duration=2.0,
    width=160,
    height=120,
    fps=25.0,
    video_codec="h264",
    audio_codec="aac",
)


async def finish_export(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    export: Export,
    *,
    data: bytes | None = None,
    link_from: Path | None = None,
) -> None:
    """What a worker does when an export finishes: its file in place (new bytes, or a hard
    link to an equal render's file), then DONE through the lifecycle, which moves the
    project's latest export only forward."""
    worker = EventLog(queue.pool).publish
    claimed = await lifecycle.claim(db=db, announce=worker, render_id=export.render_id, lease_s=60)
    assert claimed is not None
    key = renders.output_key("export", export.project_id, export.version)
    if link_from is not None:
        target = store.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(link_from, target)
    else:
        assert data is not None
        store.write_bytes(key, data)
    size = store.size(key) or 0
    finished = await lifecycle.done(
        db=db, announce=worker, render=claimed, output_key=key, size=size, facts=FINISHED
    )
    assert finished == "done"

"""The render job run in the test's own process: a worker's runtime over the test's database,
Redis and media root, and one render run to its end."""

import contextlib
from pathlib import Path
from typing import Any

from arq import Retry
from sqlmodel import select

from jobs.events import EventLog
from jobs.queue import ArqQueue
from jobs.render import render
from jobs.runtime import Runtime, WorkerSettings
from models.db import Database
from models.states import RenderKind
from models.store import MediaStore
from models.tables import Project, ProxyPlan, Render, Version
from resolvers import renders, versions
from resolvers.users import Actor


def runtime(db: Database, queue: ArqQueue, store: MediaStore, **changes: Any) -> Runtime:
    """What a worker holds; exports use x264's fastest preset unless ``changes`` say not."""
    settings = WorkerSettings(
        database_url=db.url,
        redis_url="redis://unused",  # the job reaches Redis through ``queue.pool``
        media_root=store.root,
        **{"render_timeout_s": 60, "export_x264_preset": "ultrafast", **changes},
    )
    return Runtime(
        config=settings, db=db, store=store, redis=queue.pool, events=EventLog(queue.pool)
    )


async def rendered(rt: Runtime, job: Render) -> Render:
    """Run the render job once and return the row as it ended."""
    assert job.id is not None
    with contextlib.suppress(Retry):  # the job asked to run again: the row says why
        await render({"runtime": rt}, job.id)
    async with rt.db.read() as session:
        row = await session.get(Render, job.id)
    assert row is not None
    return row


async def output_of(rt: Runtime, job: Render) -> Path:
    """Run the render job and return its file; fails the test with the render's error."""
    done = await rendered(rt, job)
    assert (done.status, done.error) == ("done", None)
    assert done.output_key is not None
    return rt.store.path(done.output_key)


async def proxy_and_export(
    rt: Runtime, queue: ArqQueue, actor: Actor, project: Project, version: int
) -> tuple[Path, Path]:
    """Render ``version``'s proxy (queued with the version) and an export of it."""
    assert project.id is not None
    async with rt.db.read() as session:
        proxy = (
            await session.exec(
                select(Render).where(
                    Render.project_id == project.id,
                    Render.version == version,
                    Render.kind == RenderKind.PROXY,
                )
            )
        ).one()
    _, export = await renders.request_export(
        db=rt.db,
        queue=queue,
        actor=actor,
        project_id=project.id,
        version=version,
        preset=rt.config.export,
    )
    return await output_of(rt, proxy), await output_of(rt, export)


async def append(
    rt: Runtime, queue: ArqQueue, actor: Actor, project: Project, raw_ops: list[dict[str, Any]]
) -> tuple[Version, Render]:
    """Append ``raw_ops`` as the client sends them; the new version and its queued proxy."""
    assert project.id is not None
    _, version, proxy = await versions.append_ops(
        db=rt.db,
        queue=queue,
        actor=actor,
        project_id=project.id,
        raw_ops=raw_ops,
        expected_version=None,
    )
    return version, proxy


async def sound_of(rt: Runtime, job: Render) -> Path:
    """The folder of a segmented proxy's sound, as its plan names it."""
    async with rt.db.read() as session:
        plan = await session.get(ProxyPlan, job.id)
    assert plan is not None and plan.audio_key is not None, "the proxy has no sound planned"
    return rt.store.path(plan.audio_key)

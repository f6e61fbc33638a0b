"""Renders through the real job, in process: edits that validate render, within their limits."""

import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from jobs import runner
from jobs.events import EventLog
from jobs.queue import ArqQueue
from jobs.render import render
from jobs.runtime import Runtime, WorkerSettings
from models.db import Database
from models.store import MediaStore
from models.tables import Project, Render
from resolvers import ids, renders, versions
from resolvers.presets import PROXY
from resolvers.users import Actor
from tests.helpers import measure
from tests.helpers.domain import insert_history, new_project


def runtime(db: Database, queue: ArqQueue, store: MediaStore, *, memory_mb: int = 4096) -> Runtime:
    """What a worker holds, over the test's database, Redis and media root."""
    settings = WorkerSettings(
        database_url=db.url,
        redis_url="redis://unused",  # the job reaches Redis through ``queue.pool``
        media_root=store.root,
        render_timeout_s=60,
        export_x264_preset="ultrafast",
    )
    # Copied without validation: a test may set a limit below what an operator could, to hit it.
    settings = settings.model_copy(update={"render_max_memory_mb": memory_mb})
    return Runtime(
        config=settings, db=db, store=store, redis=queue.pool, events=EventLog(queue.pool)
    )


async def rendered(rt: Runtime, job: Render) -> Render:
    """Run the render job once and return the row as it ended."""
    assert job.id is not None
    await render({"runtime": rt}, job.id)
    async with rt.db.read() as session:
        row = await session.get(Render, job.id)
    assert row is not None
    return row


async def proxy_and_export(
    rt: Runtime, queue: ArqQueue, actor: Actor, project: Project, raw_ops: list[dict[str, Any]]
) -> tuple[Path, Path]:
    """Append ``raw_ops``, then render the new version's proxy and its export."""
    assert project.id is not None
    _, version, proxy = await versions.append_ops(
        db=rt.db,
        queue=queue,
        actor=actor,
        project_id=project.id,
        raw_ops=raw_ops,
        expected_version=None,
    )
    _, export = await renders.request_export(
        db=rt.db,
        queue=queue,
        actor=actor,
        project_id=project.id,
        version=version.number,
        preset=rt.config.export,
    )
    files = []
    for job in (proxy, export):
        done = await rendered(rt, job)
        assert (done.status, done.error) == ("done", None)
        assert done.output_key is not None
        files.append(rt.store.path(done.output_key))
    return files[0], files[1]


def concat(video_id: int) -> dict[str, Any]:
    return {"type": "concat", "params": {"videoId": ids.encode("Video", video_id)}}


async def test_the_same_video_appended_twice_renders_both_times(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    rt = runtime(db, queue, store)
    project = await new_project(db, queue, store, alice, media["clip"])  # 2 s
    other = await new_project(db, queue, store, alice, media["other"])  # 3 s
    twice = [concat(other.source_video_id)] * 2
    for output in await proxy_and_export(rt, queue, alice, project, twice):
        assert measure.duration(output) == pytest.approx(2 + 3 + 3, abs=0.2)


async def test_the_projects_own_source_appended_renders(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    rt = runtime(db, queue, store)
    project = await new_project(db, queue, store, alice, media["clip"])  # 2 s
    itself = [concat(project.source_video_id)]
    proxy, export = await proxy_and_export(rt, queue, alice, project, itself)
    for output in (proxy, export):
        assert measure.duration(output) == pytest.approx(2 + 2, abs=0.2)
    assert measure.size(export) == (160, 120)
    # A later edit builds on it and renders too: nothing is poisoned.
    later: list[dict[str, Any]] = [{"type": "trim", "params": {"start": 1, "end": 3.5}}]
    for output in await proxy_and_export(rt, queue, alice, project, later):
        assert measure.duration(output) == pytest.approx(2.5, abs=0.2)


async def test_a_history_longer_than_the_recursion_limit_renders(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    rt = runtime(db, queue, store)
    project = await new_project(db, queue, store, alice, media["clip"])
    assert project.id is not None
    flips = sys.getrecursionlimit() + 500  # even: the picture ends the right way round
    await insert_history(db, project, flips + flips % 2)
    version = await versions.get_version(db=db, project_id=project.id, number=1)
    assert version is not None
    async with db.write() as session:
        row = await session.get(Project, project.id)
        assert row is not None
        proxy = await renders.add_render(session, row, version, renders.PROXY, PROXY)
    done = await rendered(rt, proxy)
    assert (done.status, done.error) == ("done", None)
    assert done.output_key is not None
    output = rt.store.path(done.output_key)
    assert measure.duration(output) == pytest.approx(2.0, abs=0.15)
    source = store.path("videos").glob("*_480p.mp4")
    plain = measure.mean(measure.signal(next(source), "YAVG", vf="crop=40:120:0:0"))
    assert measure.mean(measure.signal(output, "YAVG", vf="crop=40:120:0:0")) == pytest.approx(
        plain, abs=3
    )


async def test_a_render_over_the_memory_limit_fails_once_naming_the_setting(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    # No ffmpeg can even load its libraries in 32 MB of address space.
    rt = runtime(db, queue, store, memory_mb=32)
    project = await new_project(db, queue, store, alice, media["clip"])
    assert project.id is not None
    _, job = await renders.request_export(
        db=db, queue=queue, actor=alice, project_id=project.id, version=0, preset=rt.config.export
    )
    failed = await rendered(rt, job)
    assert failed.status == "failed" and failed.attempts == 1
    assert failed.error == (
        "the render needed more memory than EDITGRAPH_RENDER_MAX_MEMORY_MB allows (32 MB)"
    )
    assert not list(store.path("export").rglob("*.mp4"))


async def test_every_ffmpeg_runs_under_the_memory_and_cpu_limits(media: dict[str, Path]) -> None:
    seen: list[tuple[tuple[int, int], tuple[int, int]]] = []

    async def look(_: float) -> bool:
        for child in psutil.Process().children():
            if child.name() == "ffmpeg":
                seen.append((child.rlimit(psutil.RLIMIT_AS), child.rlimit(psutil.RLIMIT_CPU)))
        return False  # seen once is enough: cancel

    argv = ["ffmpeg", "-nostdin", "-v", "error", "-re", "-i", str(media["clip"])]
    outcome = await runner.run_ffmpeg(
        [*argv, "-f", "null", "-"], expected_duration=2, timeout_s=30, on_progress=look
    )
    assert outcome.cancelled
    memory, cpu = seen[0]
    assert memory == (4096 * 1024 * 1024,) * 2
    # All cores busy for the whole timeout, and a little: never stricter than the timeout.
    cpu_s = 30 * (psutil.cpu_count() or 1) + runner.CPU_GRACE_S
    assert cpu == (cpu_s, cpu_s + runner.CPU_GRACE_S)


async def test_an_ffmpeg_past_its_cpu_time_stops_with_a_reason() -> None:
    busy = "testsrc2=size=1280x720:rate=30:duration=600"
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", busy]
    argv += ["-c:v", "libx264", "-preset", "medium", "-f", "null", "-"]

    async def keep(_: float) -> bool:
        return True

    outcome = await runner.run_ffmpeg(
        argv, expected_duration=600, timeout_s=60, on_progress=keep, max_cpu_s=1
    )
    assert outcome.returncode != 0 and not outcome.timed_out
    assert outcome.limit is not None
    assert outcome.limit.startswith("the render used more than 1 s of CPU time")

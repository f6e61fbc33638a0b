"""Renders through the real job, in process: edits that validate render, within their limits."""

import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from jobs import runner
from jobs.queue import ArqQueue
from jobs.runtime import Runtime
from models.db import Database
from models.states import RenderKind
from models.store import MediaStore
from models.tables import Project
from resolvers import ids, renders, versions
from resolvers.presets import PROXY
from resolvers.users import Actor
from tests.helpers import measure
from tests.helpers.db import SQLITE_ONLY
from tests.helpers.domain import insert_history, new_project
from tests.helpers.render_job import append, proxy_and_export, rendered, runtime


async def appended_and_rendered(
    rt: Runtime, queue: ArqQueue, actor: Actor, project: Project, raw_ops: list[dict[str, Any]]
) -> tuple[Path, Path]:
    """Append ``raw_ops``, then render the new version's proxy and its export."""
    version, _ = await append(rt, queue, actor, project, raw_ops)
    return await proxy_and_export(rt, queue, actor, project, version.number)


def concat(video_id: int) -> dict[str, Any]:
    return {"type": "concat", "params": {"videoId": ids.encode("Video", video_id)}}


@SQLITE_ONLY  # what ffmpeg makes of the edit, not the database
async def test_the_same_video_appended_twice_renders_both_times(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    rt = runtime(db, queue, store)
    project = await new_project(db, queue, store, alice, media["clip"])  # 2 s
    other = await new_project(db, queue, store, alice, media["other"])  # 3 s
    twice = [concat(other.source_video_id)] * 2
    for output in await appended_and_rendered(rt, queue, alice, project, twice):
        assert measure.duration(output) == pytest.approx(2 + 3 + 3, abs=0.2)


@SQLITE_ONLY  # what ffmpeg makes of the edit, not the database
async def test_the_projects_own_source_appended_renders(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    rt = runtime(db, queue, store)
    project = await new_project(db, queue, store, alice, media["clip"])  # 2 s
    itself = [concat(project.source_video_id)]
    proxy, export = await appended_and_rendered(rt, queue, alice, project, itself)
    for output in (proxy, export):
        assert measure.duration(output) == pytest.approx(2 + 2, abs=0.2)
    assert measure.size(export) == (160, 120)
    # A later edit builds on it and renders too: nothing is poisoned.
    later: list[dict[str, Any]] = [{"type": "trim", "params": {"start": 1, "end": 3.5}}]
    for output in await appended_and_rendered(rt, queue, alice, project, later):
        assert measure.duration(output) == pytest.approx(2.5, abs=0.2)


@SQLITE_ONLY  # one version of many ops: the compiler's depth, not the database
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
        proxy = await renders.add_render(session, row, version, RenderKind.PROXY, PROXY)
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


@SQLITE_ONLY  # what ffmpeg makes of the edit, not the database
async def test_a_render_over_the_memory_limit_fails_once_naming_the_setting(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    media: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No ffmpeg can even load its libraries in 32 MB of address space. Set without
    # validation: no operator may go below 256 MB, but this is the limit to hit.
    caplog.set_level(logging.INFO, logger="resolvers.lifecycle")
    rt = runtime(db, queue, store)
    rt = replace(rt, config=rt.config.model_copy(update={"render_max_memory_mb": 32}))
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
    # The operator sees it once, at WARNING, with the reason.
    warnings = [r for r in caplog.records if r.name == "resolvers.lifecycle" and r.levelno >= 30]
    assert [(vars(r)["status"], vars(r)["reason"]) for r in warnings] == [("failed", failed.error)]
    assert failed.error in warnings[0].getMessage()


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

"""The render timeout scales with the work: a base plus so many seconds per second of output;
a render past it fails once, naming both settings."""

import math
from pathlib import Path

import psutil
import pytest

from editgraph.settings import Settings
from jobs import runner
from jobs.queue import ArqQueue
from jobs.runtime import Runtime
from jobs.worker import create_worker
from models.db import Database
from models.store import MediaStore
from models.tables import Render
from resolvers import renders
from resolvers.users import Actor
from tests.helpers import measure
from tests.helpers.domain import new_project
from tests.helpers.render_job import output_of, rendered, runtime

# Far too short for any ffmpeg to start and finish: only the per-second allowance lets it.
NO_TIME_S = 0.01


async def export_job(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, source: Path, **changes: float
) -> tuple[Render, Runtime]:
    """A project of ``source`` and its export queued, under a worker changed by ``changes``."""
    rt = runtime(db, queue, store, **changes)
    project = await new_project(db, queue, store, alice, source)
    assert project.id is not None
    _, job = await renders.request_export(
        db=db, queue=queue, actor=alice, project_id=project.id, version=0, preset=rt.config.export
    )
    return job, rt


async def test_a_render_gets_time_for_each_second_it_writes(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    job, rt = await export_job(
        db, queue, store, alice, media["clip"], render_timeout_s=NO_TIME_S, render_timeout_per_s=20
    )
    output = await output_of(rt, job)  # 0.01 s + 20 s x 2 s of output
    assert measure.duration(output) == pytest.approx(2.0, abs=0.1)


async def test_a_timed_out_render_says_which_limit_it_hit_and_how_to_raise_it(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    job, rt = await export_job(
        db, queue, store, alice, media["clip"], render_timeout_s=NO_TIME_S, render_timeout_per_s=0
    )
    failed = await rendered(rt, job)
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert failed.error == (
        "the render took longer than 0.01 s and was stopped: EDITGRAPH_RENDER_TIMEOUT_S "
        "(0.01 s) plus EDITGRAPH_RENDER_TIMEOUT_PER_S (0 s) for each of the 2.0 s it writes; "
        "raise either to allow longer renders"
    )
    assert not list(store.path("export").rglob("*.mp4"))


async def test_the_cpu_time_limit_follows_the_scaled_timeout(media: dict[str, Path]) -> None:
    seen: list[tuple[int, int]] = []

    async def look(_: float) -> bool:
        for child in psutil.Process().children():
            if child.name() == "ffmpeg":
                seen.append(child.rlimit(psutil.RLIMIT_CPU))
        return False  # seen once is enough: cancel

    argv = ["ffmpeg", "-nostdin", "-v", "error", "-re", "-i", str(media["clip"]), "-f", "null", "-"]
    outcome = await runner.run_ffmpeg(
        argv, expected_duration=2, timeout_s=30, timeout_per_s=10, on_progress=look
    )
    assert outcome.cancelled
    # All cores busy for the whole timeout (30 s + 10 s x 2 s), and a little.
    cpu_s = math.ceil(50 * (psutil.cpu_count() or 1)) + runner.CPU_GRACE_S
    assert seen[0] == (cpu_s, cpu_s + runner.CPU_GRACE_S)


async def test_the_worker_waits_for_the_longest_render_it_may_be_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDITGRAPH_RENDER_TIMEOUT_S", "120")
    monkeypatch.setenv("EDITGRAPH_RENDER_TIMEOUT_PER_S", "3")
    monkeypatch.setenv("EDITGRAPH_MAX_TIMELINE_S", "600")
    settings = Settings(redis_url="redis://127.0.0.1:1/15")
    assert (settings.render_timeout_s, settings.render_timeout_per_s) == (120, 3)
    worker = create_worker(settings, handle_signals=False)
    # arq's own timeout is only a backstop: never before editgraph's, for any version.
    longest = 120 + 3 * 600
    assert worker.functions["render"].timeout_s == pytest.approx(longest + 60)
    assert worker.functions["mezzanine"].timeout_s == pytest.approx(longest + 60)

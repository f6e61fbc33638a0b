"""Rendering on a 60 s 1080p30 source: (a) preview latency after an edit, (b) export speed.

Both run through the real API and a real `editgraph worker` process, and each is compared
with raw ffmpeg doing the same work in the same run.
"""

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import emit, serve
from editgraph.app import create_app
from editgraph.redis_embed import EmbeddedRedis
from editgraph.settings import Settings
from jobs import edl
from models.db import Database
from models.migrate import upgrade
from resolvers import ops, users
from resolvers.presets import PROXY, export_preset

SECONDS = int(os.environ.get("EDITGRAPH_BENCH_RENDER_SECONDS", "60"))
RUNS = 5
PROJECT = """query($id: ID!) { project(id: $id) { latestProxy { version status }
  latestExport { status render { status error } } } }"""


def make_source(path: Path) -> None:
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=size=1920x1080:rate=30:duration={SECONDS}",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:duration={SECONDS}",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(path),
        ],
        check=True,
    )


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


async def gql(client: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    body = (await client.post("/graphql", json={"query": query, "variables": variables})).json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def wait(client: httpx.AsyncClient, pid: str, done: Any, interval: float = 0.05) -> float:
    start = time.perf_counter()
    while True:
        project = (await gql(client, PROJECT, {"id": pid}))["project"]
        if done(project):
            return time.perf_counter() - start
        await asyncio.sleep(interval)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis:
        work = Path(tmp)
        source = work / "source.mp4"
        make_source(source)
        db_url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
        db = Database(db_url)
        await upgrade(db)
        _, token = await users.create_user(db=db, name="bench")
        env = {
            "EDITGRAPH_DATABASE_URL": db_url,
            "EDITGRAPH_REDIS_URL": redis.url,
            "EDITGRAPH_MEDIA_ROOT": str(work / "uploads"),
            "EDITGRAPH_ENV": "test",
        }
        settings = Settings(
            env="test", database_url=db_url, redis_url=redis.url, media_root=work / "uploads"
        )
        clean = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
        worker = subprocess.Popen(
            [sys.executable, "-m", "editgraph.cli", "worker"],
            env={**clean, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        app = create_app(settings, db=db)
        try:
            async with (
                serve(app) as base,
                httpx.AsyncClient(
                    base_url=base,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=600,
                ) as client,
            ):
                await measure(client, source, work)
        finally:
            worker.terminate()
            worker.wait()
            await db.dispose()


async def measure(client: httpx.AsyncClient, source: Path, work: Path) -> None:
    operations = (
        '{"query": "mutation($f: Upload!) { uploadVideo(file: $f) { ... on VideoUploaded '
        '{ video { id } } } }", "variables": {"f": null}}'
    )
    with source.open("rb") as fh:
        uploaded = (
            await client.post(
                "/graphql",
                data={"operations": operations, "map": '{"0": ["variables.f"]}'},
                files={"0": ("source.mp4", fh, "video/mp4")},
            )
        ).json()
    video = uploaded["data"]["uploadVideo"]["video"]["id"]
    latencies = []
    pid = ""
    for run in range(1, RUNS + 1):
        # A fresh project each run, so every edit is exactly blur + brightness on the source.
        created = await gql(
            client,
            'mutation($v: ID!) { createProject(videoId: $v, name: "bench") '
            "{ ... on ProjectCreated { project { id } } } }",
            {"v": video},
        )
        pid = created["createProject"]["project"]["id"]
        # Version 0's proxy (the first one also makes the 480p working copy, as after upload).
        await wait(
            client, pid, lambda p: p["latestProxy"] and p["latestProxy"]["status"] == "DONE", 0.2
        )
        edit = [{"gaussianBlur": {"radius": 5}}, {"brightness": {"brightness": 20 + run}}]
        start = time.perf_counter()
        await gql(
            client,
            "mutation($p: ID!, $ops: [OpInput!]!) { appendOps(projectId: $p, ops: $ops) "
            "{ __typename } }",
            {"p": pid, "ops": edit},
        )
        await wait(
            client,
            pid,
            lambda p: p["latestProxy"]["version"] == 1 and p["latestProxy"]["status"] == "DONE",
        )
        latencies.append(time.perf_counter() - start)
    raw_preview = statistics.median(
        timed(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-i",
                str(source),
                "-vf",
                "gblur=sigma=5,eq=brightness=0.2,scale=854:480:force_original_aspect_ratio=decrease:force_divisible_by=2",
                "-c:v",
                "libx264",
                "-preset",
                PROXY.x264_preset,
                "-b:v",
                "1M",
                "-c:a",
                "aac",
                str(work / f"raw-preview-{i}.mp4"),
            ]
        )
        for i in range(3)
    )
    emit(
        f"preview latency, appendOps to proxy DONE ({SECONDS} s 1080p30, blur + brightness)",
        statistics.median(latencies),
        "s",
        baseline=raw_preview,
        baseline_name="raw ffmpeg, same edit from the 1080p original",
        runs=RUNS,
        all_runs=[round(x, 2) for x in latencies],
    )

    start = time.perf_counter()
    await gql(
        client, "mutation($p: ID!) { requestExport(projectId: $p) { __typename } }", {"p": pid}
    )
    await wait(
        client,
        pid,
        lambda p: p["latestExport"] and p["latestExport"]["status"] in ("DONE", "FAILED"),
        0.2,
    )
    ours = time.perf_counter() - start
    preset = export_preset(crf=20, x264_preset="medium")
    plan = edl.compile_edl(
        op_list=[ops.GaussianBlur(radius=5), ops.Brightness(brightness=20 + RUNS)],
        source=edl.Source(source, "mov", 1920, 1080, 30.0, float(SECONDS), True),
        source_frame=ops.Frame(1920, 1080, float(SECONDS)),
        concat_sources={},
        preset=preset,
        output=work / "raw-export.mp4",
        workdir=work,
    )
    raw = timed(plan.argv)
    per_minute = 60 / SECONDS
    emit(
        f"export time per minute of video ({SECONDS} s 1080p30, blur + brightness, x264 medium)",
        ours * per_minute,
        "s/min",
        baseline=raw * per_minute,
        baseline_name="raw ffmpeg CLI running the same compiled graph",
    )


if __name__ == "__main__":
    asyncio.run(main())

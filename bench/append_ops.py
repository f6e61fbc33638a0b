"""appendOps latency (p50, p99) and throughput with 32 concurrent clients, vs raw Starlette."""

import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from bench.common import emit, percentile, scratch_postgres, serve
from editgraph.app import create_app
from editgraph.redis_embed import EmbeddedRedis
from editgraph.settings import Settings
from jobs.queue import ArqQueue, connect
from models.db import Database
from models.migrate import upgrade
from models.store import MediaStore
from resolvers import ids, users, versions, videos

CLIENTS = 32
REQUESTS = int(os.environ.get("EDITGRAPH_BENCH_APPENDS", "1000"))
APPEND = """mutation($p: ID!, $ops: [OpInput!]!) { appendOps(projectId: $p, ops: $ops) {
  __typename ... on OpsAppended { version { number } } } }"""


def raw_starlette() -> ASGIApp:
    """The baseline: the same HTTP round trip with a JSON body and no GraphQL or database."""

    async def endpoint(request: Request) -> JSONResponse:
        await request.json()
        return JSONResponse({"data": {"appendOps": {"__typename": "OpsAppended"}}})

    return Starlette(routes=[Route("/graphql", endpoint, methods=["POST"])])


async def hammer(base: str, token: str, project_id: str) -> tuple[list[float], float]:
    """Send REQUESTS appendOps from CLIENTS concurrent clients; latencies and wall time."""
    latencies: list[float] = []
    queue = iter(range(REQUESTS))
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def worker() -> None:
            for i in queue:
                body = {
                    "query": APPEND,
                    "variables": {
                        "p": project_id,
                        "ops": [{"brightness": {"brightness": i % 100}}],
                    },
                }
                start = time.perf_counter()
                response = await client.post(
                    "/graphql", json=body, headers={"Authorization": f"Bearer {token}"}
                )
                latencies.append(time.perf_counter() - start)
                assert response.status_code == 200 and "errors" not in response.json(), (
                    response.text
                )

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
        return latencies, time.perf_counter() - start


async def one_backend(name: str, url: str, redis_url: str, workdir: Path, source: Path) -> None:
    db = Database(url)
    await upgrade(db)
    store = MediaStore(workdir / f"uploads-{name}")
    store.ensure_layout()
    user, token = await users.create_user(db=db, name="bench")
    actor = users.Actor.of(user)
    staging = store.stage(source.name, max_bytes=1 << 30)
    staging.write(source.read_bytes())
    queue = ArqQueue(connect(redis_url))
    video, _ = await videos.upload_video(
        db=db, store=store, queue=queue, actor=actor, staged=staging.finish()
    )
    assert video.id is not None
    project = await versions.create_project(
        db=db, queue=queue, actor=actor, video_id=video.id, name="bench"
    )
    await queue.close()
    assert project.id is not None
    settings = Settings(
        env="test", redis_url=redis_url, media_root=store.root, rate_proxies=1_000_000
    )
    async with serve(raw_starlette()) as base:
        base_lat, base_wall = await hammer(base, token, "x")
    async with serve(create_app(settings, db=db)) as base:
        lat, wall = await hammer(base, token, ids.encode("Project", project.id))
    await db.dispose()
    for pct in (50, 99):
        b = percentile(base_lat, pct) * 1000
        emit(
            f"appendOps latency p{pct} ({name}, {CLIENTS} clients)",
            percentile(lat, pct) * 1000,
            "ms",
            baseline=b,
            baseline_name="raw Starlette JSON echo",
        )
    emit(
        f"appendOps throughput ({name}, {CLIENTS} clients)",
        REQUESTS / wall,
        "requests/s",
        baseline=REQUESTS / base_wall,
        baseline_name="raw Starlette JSON echo",
    )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis:
        work = Path(tmp)
        source = work / "source.mp4"
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25:duration=5",
                "-c:v",
                "libx264",
                str(source),
            ],
            check=True,
        )
        await one_backend(
            "sqlite", f"sqlite+aiosqlite:///{work / 'bench.db'}", redis.url, work, source
        )
        pg = await scratch_postgres("editgraph_bench")
        if pg:
            await one_backend("postgresql", pg, redis.url, work, source)
        else:
            emit("appendOps (postgresql)", 0, "skipped", reason="no PostgreSQL on 127.0.0.1:5432")


if __name__ == "__main__":
    asyncio.run(main())

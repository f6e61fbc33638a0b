"""Shared bench helpers: JSON-line output, percentiles, an in-process uvicorn server, and a
rendering stack (that server with a real worker process) with a client signed in to it."""

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

from editgraph.app import create_app
from editgraph.redis_embed import EmbeddedRedis, free_port
from editgraph.settings import Settings
from models.db import Database
from models.migrate import upgrade
from models.store import MediaStore
from models.tables import Blob, Video
from resolvers import users
from resolvers.versions import create_project


def emit(figure: str, value: float, unit: str, baseline: float | None = None, **extra: Any) -> None:
    """Print one figure as a JSON line, with its ratio to a baseline from the same run."""
    line: dict[str, Any] = {"figure": figure, "value": round(value, 4), "unit": unit}
    if baseline is not None:
        line["baseline"] = round(baseline, 4)
        line["ratio"] = round(value / baseline, 3) if baseline else None
    line.update(extra)
    print(json.dumps(line), flush=True)


def wait_healthy(base: str, timeout_s: float = 30.0) -> None:
    """Wait until a server at ``base`` answers /healthz (a fresh process is starting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):  # noqa: S310 (loopback)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base} did not answer /healthz in {timeout_s} s") from None
            time.sleep(0.1)


def percentile(samples: list[float], pct: float) -> float:
    """The pct-th percentile (0-100) of samples."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[int(pct) - 1]


async def scratch_postgres(name: str) -> str | None:
    """A fresh database ``name`` on the local PostgreSQL, or None when none answers."""
    admin = os.environ.get(
        "EDITGRAPH_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    )
    db = Database(admin)
    try:
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OSError:
        return None
    finally:
        await db.dispose()
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


@asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


class NoQueue:
    """A job queue that accepts and drops everything (no worker runs while a bench sets up)."""

    async def enqueue(self, job_id: str, function: str, *args: int) -> None:
        return None

    async def announce(
        self, kind: str, render: object, export: object = None, segments: object = None
    ) -> None:
        return None

    async def admit(self, *, user_id: int, kind: str) -> None:
        return None


async def project_to_watch(db: Database) -> tuple[str, int]:
    """A user and one project over a placeholder video, for subscribers to watch:
    (the user's token, the project's id)."""
    user, token = await users.create_user(db=db, name="bench")
    actor = users.Actor.of(user)
    async with db.write() as session:
        blob = Blob(sha256="0" * 64, key="videos/none.mp4", bytes=1, ref_count=1)
        session.add(blob)
        await session.flush()
        assert blob.id is not None
        video = Video(
            owner_id=actor.id,
            blob_id=blob.id,
            filename="x.mp4",
            format_name="mov",
            duration=10.0,
            width=640,
            height=360,
            fps=25.0,
            video_codec="h264",
        )
        session.add(video)
    assert video.id is not None
    project = await create_project(
        db=db, queue=NoQueue(), actor=actor, video_id=video.id, name="bench"
    )
    assert project.id is not None
    return token, project.id


@dataclass(frozen=True)
class Stack:
    """A served app and a worker process, and what a bench reads them with."""

    client: httpx.AsyncClient  # signed in as the bench user, at the server's base URL
    base: str
    token: str
    db: Database  # the server's own database, for records the API does not show
    store: MediaStore


@asynccontextmanager
async def rendering_stack(work: Path, **settings: Any) -> AsyncIterator[Stack]:
    """The app served by uvicorn in this process and one `editgraph worker` process, over
    SQLite and an embedded Redis under ``work``. ``settings`` (Settings fields) go to both."""
    with EmbeddedRedis(work / "redis") as redis:
        db_url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
        db = Database(db_url)
        await upgrade(db)
        _, token = await users.create_user(db=db, name="bench")
        fields: dict[str, Any] = {
            "env": "test",
            "database_url": db_url,
            "redis_url": redis.url,
            "media_root": work / "uploads",
            **settings,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
        env.update({f"EDITGRAPH_{k.upper()}": str(v) for k, v in fields.items()})
        worker = subprocess.Popen(
            [sys.executable, "-m", "editgraph.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        app = create_app(Settings(**fields), db=db)
        try:
            async with (
                serve(app) as base,
                httpx.AsyncClient(
                    base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=600
                ) as client,
            ):
                yield Stack(client, base, token, db, MediaStore(work / "uploads"))
        finally:
            worker.terminate()
            worker.wait()
            await db.dispose()


async def upload_video(client: httpx.AsyncClient, path: Path) -> str:
    """Upload a file through the API (GraphQL multipart); the new video's id."""
    operations = (
        '{"query": "mutation($f: Upload!) { uploadVideo(file: $f) { __typename '
        '... on VideoUploaded { video { id } } } }", "variables": {"f": null}}'
    )
    with path.open("rb") as fh:
        response = await client.post(
            "/graphql",
            data={"operations": operations, "map": '{"0": ["variables.f"]}'},
            files={"0": (path.name, fh, "video/mp4")},
        )
    body = response.json()
    assert body.get("data") and "video" in body["data"]["uploadVideo"], body
    video_id: str = body["data"]["uploadVideo"]["video"]["id"]
    return video_id


def run_timed(argv: list[str]) -> tuple[float, float]:
    """Run a command to its end: (wall seconds, CPU seconds of it and its children).
    Call it from one thread at a time: the CPU time is read from this process's children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu

"""Shared bench helpers: JSON-line output, percentiles, and an in-process uvicorn server."""

import asyncio
import json
import os
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from sqlalchemy import text
from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

from editgraph.redis_embed import free_port
from models.db import Database
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

    async def announce(self, kind: str, render: object, export: object = None) -> None:
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

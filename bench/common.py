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

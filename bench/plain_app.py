"""The baseline of the API benchmarks: the same database work as ``appendOps`` and as a
100-version history read, in bare Starlette endpoints with plain SQL and no GraphQL, served by
the same uvicorn in as many processes (``python -m uvicorn --factory bench.plain_app:create``).

The database URL comes from ``EDITGRAPH_DATABASE_URL``, like the server's."""

import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models.db import Database
from models.tables import utcnow

BUMP = text(
    "UPDATE projects SET current_version = current_version + 1 WHERE id = :p"
    " RETURNING current_version"
)
PARENT = text(
    "SELECT frame_width, frame_height, frame_duration, ops_hash, op_count FROM versions"
    " WHERE project_id = :p AND number = :n"
)
VERSION = text(
    "INSERT INTO versions (project_id, number, parent, frame_width, frame_height,"
    " frame_duration, ops_hash, op_count, created_at)"
    " VALUES (:p, :n, :parent, :w, :h, :d, :hash, :count, :at)"
)
OP = text(
    "INSERT INTO edit_operations (project_id, version, seq, type, params, created_at)"
    " VALUES (:p, :n, :seq, :type, :params, :at)"
)
RENDER = text(
    "INSERT INTO renders (project_id, kind, version, preset, status, progress, content_key,"
    " job_id, attempts, on_demand, created_at)"
    " VALUES (:p, 'proxy', :n, 'proxy', 'queued', 0, :key, :job, 0, false, :at)"
)
VERSIONS = text("SELECT number FROM versions WHERE project_id = :p ORDER BY number DESC LIMIT 100")
OPS = text(
    "SELECT version, type, params FROM edit_operations"
    " WHERE project_id = :p AND version >= :low ORDER BY version, seq"
)
PROXIES = text(
    "SELECT version, status, output_key FROM renders"
    " WHERE project_id = :p AND kind = 'proxy' AND version >= :low"
)


def create() -> Starlette:
    """The baseline app (a uvicorn factory)."""
    url = os.environ["EDITGRAPH_DATABASE_URL"]

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        db = Database(url)
        try:
            yield {"db": db}
        finally:
            await db.dispose()

    async def append(request: Request) -> Response:
        body = await request.json()
        project, ops = int(body["project"]), body["ops"]
        db: Database = request.state.db
        now = utcnow()
        async with db.write() as session:
            conn = await session.connection()
            number = (await conn.execute(BUMP, {"p": project})).scalar_one()
            parent = (await conn.execute(PARENT, {"p": project, "n": number - 1})).one()
            chained = hashlib.sha256((parent.ops_hash + json.dumps(ops)).encode()).hexdigest()
            await conn.execute(
                VERSION,
                {
                    "p": project,
                    "n": number,
                    "parent": number - 1,
                    "w": parent.frame_width,
                    "h": parent.frame_height,
                    "d": parent.frame_duration,
                    "hash": chained,
                    "count": parent.op_count + len(ops),
                    "at": now,
                },
            )
            await conn.execute(
                OP,
                [
                    {
                        "p": project,
                        "n": number,
                        "seq": seq,
                        "type": op["type"],
                        "params": json.dumps(op["params"]),
                        "at": now,
                    }
                    for seq, op in enumerate(ops)
                ],
            )
            await conn.execute(
                RENDER,
                {
                    "p": project,
                    "n": number,
                    "key": chained,
                    "job": f"bench-{project}-{number}",
                    "at": now,
                },
            )
        return JSONResponse({"data": {"appendOps": {"version": {"number": number}}}})

    async def history(request: Request) -> Response:
        project = int(request.query_params["project"])
        db: Database = request.state.db
        async with db.read() as session:
            conn = await session.connection()
            numbers = [n for (n,) in await conn.execute(VERSIONS, {"p": project})]
            low = min(numbers, default=0)
            ops: dict[int, list[dict[str, Any]]] = {n: [] for n in numbers}
            for version, kind, params in await conn.execute(OPS, {"p": project, "low": low}):
                ops[version].append(
                    {
                        "type": kind,
                        "params": json.loads(params) if isinstance(params, str) else params,
                    }
                )
            proxies = {
                version: {"status": status.upper(), "url": key}
                for version, status, key in await conn.execute(PROXIES, {"p": project, "low": low})
            }
        nodes = [{"number": n, "ops": ops[n], "proxy": proxies.get(n)} for n in numbers]
        return JSONResponse({"data": {"project": {"versions": {"nodes": nodes}}}})

    return Starlette(
        routes=[
            Route("/append", append, methods=["POST"]),
            Route("/history", history, methods=["GET"]),
        ],
        lifespan=lifespan,
    )

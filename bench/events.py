"""Event latency from a worker's publish to the client's receipt, and memory per subscriber.

One `editgraph serve` process; 1, 100 and 1,000 graphql-transport-ws clients (in this
process) subscribed to one project's renderEvents; the publisher plays the worker.
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from sqlmodel import select
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bench.common import emit, percentile
from editgraph.redis_embed import EmbeddedRedis, free_port
from jobs.events import EventLog
from jobs.queue import connect as connect_redis
from models.db import Database
from models.migrate import upgrade
from models.tables import Blob, Render, Video
from resolvers import ids, users
from resolvers.versions import create_project

ROUNDS = 20
SUBSCRIBE = (
    """subscription($p: ID!) { renderEvents(projectId: $p) { cursor render { progress } } }"""
)


class Nothing:
    """A queue that accepts and drops everything (no worker runs during this benchmark)."""

    async def enqueue(self, job_id: str, function: str, *args: int) -> None:
        return None

    async def announce(self, kind: str, render: Render, export: object = None) -> None:
        return None

    async def admit(self, *, user_id: int, kind: str) -> None:
        return None


async def subscriber(
    url: str, token: str, pid: str, inbox: asyncio.Queue[tuple[float, float]]
) -> ClientConnection:
    ws = await connect(url, subprotocols=[Subprotocol("graphql-transport-ws")], max_queue=None)
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    await ws.send(
        json.dumps(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": SUBSCRIBE, "variables": {"p": pid}},
            }
        )
    )

    async def read() -> None:
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "next":
                sent = message["payload"]["data"]["renderEvents"]["render"]["progress"]
                inbox.put_nowait((sent, time.perf_counter()))

    asyncio.get_running_loop().create_task(read())
    return ws


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis:
        work = Path(tmp)
        db_url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
        db = Database(db_url)
        await upgrade(db)
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
            db=db, queue=Nothing(), actor=actor, video_id=video.id, name="bench"
        )
        assert project.id is not None
        async with db.read() as session:
            render = (
                await session.exec(select(Render).where(Render.project_id == project.id))
            ).one()
        pid = ids.encode("Project", project.id)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
        env.update(
            EDITGRAPH_DATABASE_URL=db_url,
            EDITGRAPH_REDIS_URL=redis.url,
            EDITGRAPH_MEDIA_ROOT=str(work / "uploads"),
            EDITGRAPH_EMBEDDED_WORKER="false",
            EDITGRAPH_ENV="test",
            EDITGRAPH_SUBSCRIPTIONS_PER_USER="2000",
        )
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "editgraph.cli",
                "serve",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            while "GraphiQL" not in server.stdout.readline():
                pass
            await asyncio.sleep(1.0)
            await measure(
                f"ws://127.0.0.1:{port}/graphql", token, pid, render, redis.url, server.pid
            )
        finally:
            server.terminate()
            server.wait()
            await db.dispose()


async def measure(
    url: str, token: str, pid: str, render: Render, redis_url: str, server_pid: int
) -> None:
    log = EventLog(connect_redis(redis_url))
    server = psutil.Process(server_pid)
    sockets: list[ClientConnection] = []
    inbox: asyncio.Queue[tuple[float, float]] = asyncio.Queue()
    rss_idle = server.memory_info().rss
    for count in (1, 100, 1000):
        while len(sockets) < count:
            sockets.append(await subscriber(url, token, pid, inbox))
        await asyncio.sleep(1.0)
        if count == 1000:
            rss = server.memory_info().rss
            emit(
                "server memory per idle subscriber (1,000 subscribed)",
                (rss - rss_idle) / count / 1024,
                "KiB",
            )
        latencies: list[float] = []
        for round_ in range(ROUNDS):
            # The progress field carries the send time, so each client can measure its delay.
            stamp = time.perf_counter()
            render.progress = stamp
            await log.publish("progress", render)
            received = 0
            while received < count:
                sent, got = await asyncio.wait_for(inbox.get(), 30)
                if sent == stamp:
                    latencies.append(got - sent)
                    received += 1
            await asyncio.sleep(0.05 if round_ else 0.2)
        for pct in (50, 99):
            emit(
                f"event latency p{pct}, publish to client ({count} subscriber(s))",
                percentile(latencies, pct) * 1000,
                "ms",
                samples=len(latencies),
            )
    for ws in sockets:
        await ws.close()
    await log.redis.aclose(close_connection_pool=True)


if __name__ == "__main__":
    asyncio.run(main())

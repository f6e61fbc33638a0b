"""Event latency from a worker's publish to the client's receipt, and memory per subscriber.

One `editgraph serve` process; 1, 100, 1,000 and 5,000 graphql-transport-ws clients (in this
process, the server's is another) subscribed to one project's renderEvents; the publisher
plays the worker. Each figure's baseline is the latency to a single subscriber in the same
run. The clients' own work (5,000 frames to parse per event, on the same 2 cores) is part of
what is measured.
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

from bench.common import emit, percentile, project_to_watch
from editgraph.redis_embed import EmbeddedRedis, free_port
from jobs.events import EventLog
from jobs.queue import connect as connect_redis
from models.db import Database
from models.migrate import upgrade
from models.tables import Render
from resolvers import ids

ROUNDS = 20
COUNTS = [int(n) for n in os.environ.get("EDITGRAPH_BENCH_FANOUT", "1,100,1000,5000").split(",")]
SUBSCRIBE = (
    """subscription($p: ID!) { renderEvents(projectId: $p) { cursor render { progress } } }"""
)


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
        token, project_id = await project_to_watch(db)
        async with db.read() as session:
            render = (
                await session.exec(select(Render).where(Render.project_id == project_id))
            ).one()
        pid = ids.encode("Project", project_id)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
        env.update(
            EDITGRAPH_DATABASE_URL=db_url,
            EDITGRAPH_REDIS_URL=redis.url,
            EDITGRAPH_MEDIA_ROOT=str(work / "uploads"),
            EDITGRAPH_EMBEDDED_WORKER="false",
            EDITGRAPH_ENV="test",
            EDITGRAPH_SUBSCRIPTIONS_PER_USER=str(max(COUNTS) + 100),
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
    single: dict[int, float] = {}
    for count in COUNTS:
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
            value = percentile(latencies, pct) * 1000
            single.setdefault(pct, value)
            emit(
                f"event latency p{pct}, publish to client ({count} subscriber(s))",
                value,
                "ms",
                baseline=single[pct],
                baseline_name="one subscriber",
                samples=len(latencies),
            )
    for ws in sockets:
        await ws.close()
    await log.redis.aclose(close_connection_pool=True)


if __name__ == "__main__":
    asyncio.run(main())

"""Does the server's memory come back after websocket subscribers leave, cycle after cycle?

One `editgraph serve` process (its embedded Redis, no worker); the subscribers live in their
own process. Each cycle: N graphql-transport-ws clients subscribe to renderEvents, then all
of them leave. The server's RSS is read at idle, with the N subscribers, and SETTLE_S seconds
after they left; each figure carries its ratio to the idle RSS of the same run. Growth cycle
after cycle would be a leak; a plateau above idle is memory the process keeps.
"""

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path

import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bench.common import emit, project_to_watch
from editgraph.redis_embed import free_port
from models.db import Database
from models.migrate import upgrade
from resolvers import ids

SUBSCRIBERS = int(os.environ.get("EDITGRAPH_BENCH_SUBSCRIBERS", "200"))
CYCLES = 3
# The server reclaims 1 s after a burst has left, at most once every 10 s (editgraph/bus.py).
SETTLE_S = 12.0
MiB = 1024 * 1024
SUBSCRIBE = "subscription($p: ID!) { renderEvents(projectId: $p) { cursor } }"


async def prepare(url: str) -> tuple[str, str]:
    """A user and one project to subscribe to: (token, project id)."""
    db = Database(url)
    await upgrade(db)
    token, project_id = await project_to_watch(db)
    await db.dispose()
    return token, ids.encode("Project", project_id)


async def subscribers(url: str, token: str, pid: str, orders: Connection) -> None:
    """Open SUBSCRIBERS subscriptions on "join", close them all on "leave", until "exit"."""
    sockets: list[ClientConnection] = []
    loop = asyncio.get_running_loop()
    while (order := await loop.run_in_executor(None, orders.recv)) != "exit":
        if order == "join":
            for n in range(SUBSCRIBERS):
                ws = await connect(url, subprotocols=[Subprotocol("graphql-transport-ws")])
                init = {"authorization": f"Bearer {token}"}
                await ws.send(json.dumps({"type": "connection_init", "payload": init}))
                assert json.loads(await ws.recv())["type"] == "connection_ack"
                payload = {"query": SUBSCRIBE, "variables": {"p": pid}}
                await ws.send(json.dumps({"id": str(n), "type": "subscribe", "payload": payload}))
                sockets.append(ws)
        elif order == "leave":
            await asyncio.gather(*(ws.close() for ws in sockets))
            sockets.clear()
        orders.send("done")


def subscriber_process(url: str, token: str, pid: str, orders: Connection) -> None:
    asyncio.run(subscribers(url, token, pid, orders))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = f"sqlite+aiosqlite:///{root / 'bench.db'}"
        token, pid = asyncio.run(prepare(url))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
        env.update(
            EDITGRAPH_DATABASE_URL=url,
            EDITGRAPH_MEDIA_ROOT=str(root / "uploads"),
            EDITGRAPH_DATA_DIR=str(root / "data"),
            EDITGRAPH_EMBEDDED_WORKER="false",
            EDITGRAPH_SUBSCRIPTIONS_PER_USER=str(max(SUBSCRIBERS, 100)),
        )
        serve = ["serve", "--port", str(port), "--log-level", "warning"]
        server = subprocess.Popen(
            [sys.executable, "-m", "editgraph.cli", *serve],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        ours, theirs = multiprocessing.Pipe()
        client = multiprocessing.get_context("spawn").Process(
            target=subscriber_process, args=(f"ws://127.0.0.1:{port}/graphql", token, pid, theirs)
        )
        try:
            for _ in range(300):
                try:
                    with urllib.request.urlopen(base + "/healthz", timeout=1):  # noqa: S310
                        break
                except OSError:
                    time.sleep(0.1)
            client.start()
            time.sleep(2.0)
            process = psutil.Process(server.pid)
            idle = process.memory_info().rss / MiB
            emit("server RSS idle", idle, "MiB")
            for cycle in range(1, CYCLES + 1):
                ours.send("join")
                ours.recv()
                time.sleep(2.0)
                joined = process.memory_info().rss / MiB
                ours.send("leave")
                ours.recv()
                time.sleep(SETTLE_S)
                left = process.memory_info().rss / MiB
                emit(
                    f"server RSS with {SUBSCRIBERS} subscribers (cycle {cycle})",
                    joined,
                    "MiB",
                    baseline=idle,
                )
                emit(
                    f"server RSS {SETTLE_S:.0f} s after {SUBSCRIBERS} subscribers left"
                    f" (cycle {cycle})",
                    left,
                    "MiB",
                    baseline=idle,
                )
            ours.send("exit")
            client.join()
        finally:
            if client.is_alive():
                client.kill()
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()

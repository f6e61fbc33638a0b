"""Does the server's memory come back after websocket subscribers leave, cycle after cycle?

One `editgraph serve` process (its embedded Redis, no worker); the subscribers live in their
own process. Each cycle: N graphql-transport-ws clients subscribe to renderEvents, then all
of them leave. The server's RSS is read at idle, with the N subscribers, and SETTLE_S seconds
after they left; each figure carries its ratio to the idle RSS of the same run. Growth cycle
after cycle would be a leak; a plateau above idle is memory the process keeps.

Then the memory one idle subscriber costs, with a client that offers per-message deflate as
browsers do, against a server with deflate on (the baseline: what editgraph did before
EDITGRAPH_WS_DEFLATE) and off (the default); and 5,000 subscribers held by one server process
while /healthz is probed.
"""

import asyncio
import contextlib
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

from bench.common import emit, percentile, project_to_watch, wait_healthy
from editgraph.redis_embed import free_port
from models.db import Database
from models.migrate import upgrade
from resolvers import ids

SUBSCRIBERS = int(os.environ.get("EDITGRAPH_BENCH_SUBSCRIBERS", "200"))
PER_SUBSCRIBER_N = 1000  # subscribers whose average memory is measured
HELD = int(os.environ.get("EDITGRAPH_BENCH_HELD_SUBSCRIBERS", "5000"))
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
    """Open subscriptions on ("join", n), close them all on "leave", until "exit". The client
    offers per-message deflate, as browsers always do."""
    sockets: list[ClientConnection] = []
    loop = asyncio.get_running_loop()
    while (order := await loop.run_in_executor(None, orders.recv))[0] != "exit":
        if order[0] == "join":
            for n in range(order[1]):
                ws = await connect(
                    url,
                    subprotocols=[Subprotocol("graphql-transport-ws")],
                    compression="deflate",
                    max_queue=4,
                )
                init = {"authorization": f"Bearer {token}"}
                await ws.send(json.dumps({"type": "connection_init", "payload": init}))
                assert json.loads(await ws.recv())["type"] == "connection_ack"
                payload = {"query": SUBSCRIBE, "variables": {"p": pid}}
                await ws.send(json.dumps({"id": str(n), "type": "subscribe", "payload": payload}))
                sockets.append(ws)
        elif order[0] == "leave":
            await asyncio.gather(*(ws.close() for ws in sockets))
            sockets.clear()
        orders.send("done")


def subscriber_process(url: str, token: str, pid: str, orders: Connection) -> None:
    asyncio.run(subscribers(url, token, pid, orders))


class Server:
    """`editgraph serve` (no worker) on a fresh database, with a subscriber process."""

    def __init__(self, root: Path, deflate: bool, per_user: int) -> None:
        url = f"sqlite+aiosqlite:///{root / 'bench.db'}"
        token, pid = asyncio.run(prepare(url))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
        env.update(
            EDITGRAPH_DATABASE_URL=url,
            EDITGRAPH_MEDIA_ROOT=str(root / "uploads"),
            EDITGRAPH_DATA_DIR=str(root / "data"),
            EDITGRAPH_EMBEDDED_WORKER="false",
            EDITGRAPH_SUBSCRIPTIONS_PER_USER=str(per_user),
            EDITGRAPH_WS_DEFLATE=str(deflate).lower(),
        )
        serve = ["serve", "--port", str(port), "--log-level", "warning"]
        self.server = subprocess.Popen(
            [sys.executable, "-m", "editgraph.cli", *serve], env=env, stdout=subprocess.DEVNULL
        )
        self.base = f"http://127.0.0.1:{port}"
        self.orders, theirs = multiprocessing.Pipe()
        self.client = multiprocessing.get_context("spawn").Process(
            target=subscriber_process, args=(f"ws://127.0.0.1:{port}/graphql", token, pid, theirs)
        )

    def __enter__(self) -> "Server":
        wait_healthy(self.base)
        self.client.start()
        time.sleep(2.0)
        self.process = psutil.Process(self.server.pid)
        return self

    def rss(self) -> float:
        return float(self.process.memory_info().rss / MiB)

    def order(self, *order: object) -> None:
        self.orders.send(order)
        self.orders.recv()

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(OSError):
            self.orders.send(("exit",))
        self.client.join(timeout=60)
        if self.client.is_alive():
            self.client.kill()
        self.server.terminate()
        self.server.wait(timeout=60)


def probe(base: str, seconds: float) -> list[float]:
    """/healthz latencies, one probe every 50 ms for ``seconds``."""
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        with urllib.request.urlopen(base + "/healthz", timeout=10):  # noqa: S310
            samples.append(time.perf_counter() - start)
        time.sleep(0.05)
    return samples


def leak_cycles(root: Path) -> None:
    with Server(root, deflate=False, per_user=max(SUBSCRIBERS, 100)) as server:
        idle = server.rss()
        emit("server RSS idle", idle, "MiB")
        for cycle in range(1, CYCLES + 1):
            server.order("join", SUBSCRIBERS)
            time.sleep(2.0)
            joined = server.rss()
            server.order("leave")
            time.sleep(SETTLE_S)
            left = server.rss()
            emit(
                f"server RSS with {SUBSCRIBERS} subscribers (cycle {cycle})",
                joined,
                "MiB",
                baseline=idle,
            )
            emit(
                f"server RSS {SETTLE_S:.0f} s after {SUBSCRIBERS} subscribers left (cycle {cycle})",
                left,
                "MiB",
                baseline=idle,
            )


def per_subscriber(root: Path, deflate: bool) -> float:
    """KiB of server RSS per idle subscriber whose client offers deflate."""
    with Server(root, deflate=deflate, per_user=PER_SUBSCRIBER_N) as server:
        idle = server.rss()
        server.order("join", PER_SUBSCRIBER_N)
        time.sleep(2.0)
        return (server.rss() - idle) * 1024 / PER_SUBSCRIBER_N


def held(root: Path) -> None:
    with Server(root, deflate=False, per_user=HELD) as server:
        quiet = probe(server.base, 10)
        start = time.perf_counter()
        server.order("join", HELD)
        joined_s = time.perf_counter() - start
        busy = probe(server.base, 10)
        emit(
            f"/healthz p99 with {HELD} subscribers held by one server process",
            percentile(busy, 99) * 1000,
            "ms",
            baseline=percentile(quiet, 99) * 1000,
            baseline_name="the same server idle",
            p50_ms=round(percentile(busy, 50) * 1000, 2),
            joined_in_s=round(joined_s, 1),
            rss_mib=round(server.rss(), 1),
        )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("cycles", "deflate", "plain", "held"):
            (root / name).mkdir()
        leak_cycles(root / "cycles")
        with_deflate = per_subscriber(root / "deflate", deflate=True)
        without = per_subscriber(root / "plain", deflate=False)
        emit(
            "server memory per idle subscriber, client offering deflate (default: server"
            " deflate off)",
            without,
            "KiB",
            baseline=with_deflate,
            baseline_name="server deflate on (EDITGRAPH_WS_DEFLATE=true, the old behaviour)",
        )
        held(root / "held")


if __name__ == "__main__":
    main()

"""A GC full cycle over many exports while users edit and watch: does the server stay
responsive, is anything a user keeps lost, and does memory come back after clients leave?

One `editgraph serve` process (its embedded Redis and worker) over SQLite, then over
PostgreSQL when one answers on 127.0.0.1 (``EDITGRAPH_BENCH_GC_LOAD_DBS`` picks); the load
generator runs in its own process: websocket subscribers on renderEvents, users appending
ops, and a /healthz probe every 20 ms. The baseline is the same probe with the same load and
no GC, measured in the same run.
"""

import asyncio
import itertools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import text
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bench.common import NoQueue, emit, percentile, scratch_postgres, wait_healthy
from editgraph.redis_embed import free_port
from models.db import Database
from models.migrate import upgrade
from models.store import MediaStore
from resolvers import ids, users, versions, videos
from tests.helpers.media import make_video

ROWS = int(os.environ.get("EDITGRAPH_BENCH_GC_LOAD_ROWS", "100000"))
SUBSCRIBERS = int(os.environ.get("EDITGRAPH_BENCH_GC_LOAD_SUBSCRIBERS", "200"))
EDITORS = 10
BASELINE_S = float(os.environ.get("EDITGRAPH_BENCH_GC_LOAD_BASELINE_S", "60"))  # no GC
WARMUP_S = 5.0  # after the subscribers joined, before samples count
SETTLE_S = 12.0  # after clients leave: the bus gives memory back a moment after a burst
PER_PROJECT = 100
MiB = 1024 * 1024
SUBSCRIBE = "subscription($p: ID!) { renderEvents(projectId: $p) { cursor } }"
APPEND = """mutation($p: ID!) { appendOps(projectId: $p, ops: [{brightness: {brightness: 5}}])
  { __typename } }"""
# Every REVERT_EVERY-th edit goes back to the source, so the load stays the same however long
# the GC takes (an ever longer op history would make each edit and its proxy slower).
REVERT = """mutation($p: ID!) { revertToVersion(projectId: $p, version: 0) { __typename } }"""
REVERT_EVERY = 20


async def prepare(root: Path, url: str) -> dict[str, Any]:
    """The database with ``ROWS`` old exports (each with its own small file), editors with
    projects, and an admin."""
    db = Database(url)
    await upgrade(db)
    store = MediaStore(root / "uploads")
    store.ensure_layout()
    old = "2020-01-01 00:00:00"
    projects = ROWS // PER_PROJECT
    numbers = (
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS}) "
        "SELECT i FROM n"
    )
    admin, admin_token = await users.create_user(db=db, name="admin", is_admin=True)
    assert admin.id is not None
    statements = [
        "INSERT INTO blobs (id, sha256, key, bytes, ref_count, created_at) VALUES"
        f" (1000000, 'x', 'videos/x.mp4', 1, 1, '{old}')",
        "INSERT INTO videos (id, owner_id, blob_id, filename, format_name, duration, width,"
        " height, fps, video_codec, created_at) VALUES (1000000, "
        f"{admin.id}, 1000000, 'x.mp4', 'mov', 10, 640, 360, 25, 'h264', '{old}')",
        "INSERT INTO projects (id, owner_id, name, source_video_id, current_version,"
        " latest_export_id, created_at)"
        f" SELECT i + 1000000, {admin.id}, 'p', 1000000, {PER_PROJECT},"
        f" 1000000 + i * {PER_PROJECT}, '{old}' FROM ({numbers}) AS s WHERE i <= {projects}",
        "INSERT INTO renders (id, project_id, kind, version, preset, status, progress,"
        " content_key, job_id, output_key, bytes, attempts, created_at)"
        f" SELECT 1000000 + i, 1000001 + (i - 1) / {PER_PROJECT}, 'export',"
        f" (i - 1) % {PER_PROJECT} + 1, 'export', 'done', 1, 'k', 'j' || i,"
        f" 'export/' || (1000001 + (i - 1) / {PER_PROJECT}) || '/v'"
        f" || ((i - 1) % {PER_PROJECT} + 1) || '_final.mp4', 1024, 1, '{old}'"
        f" FROM ({numbers}) AS s",
        "INSERT INTO exports (id, project_id, version, render_id, pinned, gc_state, created_at)"
        f" SELECT 1000000 + i, 1000001 + (i - 1) / {PER_PROJECT}, (i - 1) % {PER_PROJECT} + 1,"
        f" 1000000 + i, (i % 50 = 0), 'none', '{old}' FROM ({numbers}) AS s",
    ]
    if not db.is_sqlite:
        # A table filled in one go has no statistics until autovacuum's next pass, and without
        # them PostgreSQL plans the mark query as nested loops over the window (quadratic).
        statements.append("ANALYZE")
    async with db.engine.begin() as conn:
        for sql in statements:
            await conn.execute(text(sql))
    payload = b"x" * 1024
    for i in range(1, ROWS + 1):
        owner, version = 1_000_001 + (i - 1) // PER_PROJECT, (i - 1) % PER_PROJECT + 1
        path = store.path(f"export/{owner}/v{version}_final.mp4")
        if version == 1:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
    clip = make_video(root / "clip.mp4", seconds=2, size="160x120")
    editors: list[tuple[str, str]] = []
    for n in range(EDITORS):
        user, token = await users.create_user(db=db, name=f"editor{n}")
        actor = users.Actor.of(user)
        staged = store.stage("clip.mp4", max_bytes=1 << 30)
        staged.write(clip.read_bytes())
        video, _ = await videos.upload_video(
            db=db, store=store, queue=NoQueue(), actor=actor, staged=staged.finish()
        )
        assert video.id is not None
        project = await versions.create_project(
            db=db, queue=NoQueue(), actor=actor, video_id=video.id, name="edit"
        )
        assert project.id is not None
        editors.append((token, ids.encode("Project", project.id)))
    await db.dispose()
    return {"admin": admin_token, "editors": editors}


async def protected_missing(url: str, root: Path) -> int:
    """Pinned or latest exports whose file is not there."""
    db = Database(url)
    store = MediaStore(root / "uploads")
    async with db.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT r.output_key FROM exports e JOIN renders r ON r.id = e.render_id"
                    " JOIN projects p ON p.id = e.project_id"
                    " WHERE (e.pinned OR p.latest_export_id = e.id) AND r.status = 'done'"
                )
            )
        ).all()
    await db.dispose()
    return sum(1 for (key,) in rows if not store.path(key).exists())


async def load(base: str, plan: dict[str, Any], out: Connection) -> None:
    """The load generator: subscribers, editors and the /healthz probe, until told to stop."""
    ws_url = base.replace("http", "ws") + "/graphql"
    sockets: list[ClientConnection] = []
    editors = plan["editors"]
    for n in range(SUBSCRIBERS):
        token, pid = editors[n % len(editors)]
        ws = await connect(ws_url, subprotocols=[Subprotocol("graphql-transport-ws")])
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        )
        await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIBE, "variables": {"p": pid}},
                }
            )
        )
        sockets.append(ws)
    out.send("subscribed")
    # (when it started, by the wall clock, how long it took): the main process picks windows
    probes: list[tuple[float, float]] = []
    appends: list[tuple[float, float]] = []
    refused: list[str] = []  # appends that did not save, and why

    def running() -> bool:
        return not out.poll()

    async def drain(ws: ClientConnection) -> None:
        while True:
            await ws.recv()

    async def edit(client: httpx.AsyncClient, token: str, pid: str) -> None:
        auth = {"Authorization": f"Bearer {token}"}
        for n in itertools.count(1):
            if not running():
                return
            if n % REVERT_EVERY == 0:
                await client.post(
                    "/graphql", json={"query": REVERT, "variables": {"p": pid}}, headers=auth
                )
            else:
                at, start = time.time(), time.perf_counter()
                answer = await client.post(
                    "/graphql", json={"query": APPEND, "variables": {"p": pid}}, headers=auth
                )
                appends.append((at, time.perf_counter() - start))
                data = answer.json().get("data") or {}
                if (data.get("appendOps") or {}).get("__typename") != "OpsAppended":
                    refused.append(answer.text[:200])
            await asyncio.sleep(0.5)

    async def probe(client: httpx.AsyncClient) -> None:
        while running():
            at, start = time.time(), time.perf_counter()
            await client.get("/healthz")
            probes.append((at, time.perf_counter() - start))
            await asyncio.sleep(0.02)

    drains = [asyncio.create_task(drain(ws)) for ws in sockets]
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await asyncio.gather(probe(client), *(edit(client, t, p) for t, p in editors))
    for task in drains:
        task.cancel()
    for ws in sockets:
        await ws.close()
    out.send({"probes": probes, "appends": appends, "refused": refused})


def load_process(base: str, plan: dict[str, Any], out: Connection) -> None:
    asyncio.run(load(base, plan, out))


def gql(base: str, token: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 (loopback server this bench started)
        base + "/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        return json.loads(response.read())["data"]


class Rss:
    """The server's resident memory: now, and the highest seen while sampling."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0.0

    def now(self) -> float:
        mib = float(self.process.memory_info().rss) / MiB
        self.peak = max(self.peak, mib)
        return mib


class Load:
    """The load generator in its own process, from its subscribers joining to their leaving."""

    def __init__(self, base: str, plan: dict[str, Any]) -> None:
        self.pipe, theirs = multiprocessing.Pipe()
        self.child = multiprocessing.get_context("spawn").Process(
            target=load_process, args=(base, plan, theirs)
        )
        self.child.start()
        assert self.pipe.recv() == "subscribed"

    def stop(self) -> dict[str, Any]:
        """Stop the clients; their samples once they have left."""
        self.pipe.send("stop")
        samples: dict[str, Any] = self.pipe.recv()
        self.child.join()
        return samples


def window(samples: dict[str, Any], since: float, until: float) -> dict[str, Any]:
    """The latencies of the requests that started between ``since`` and ``until``."""
    return {
        "probes": [took for at, took in samples["probes"] if since <= at <= until],
        "appends": [took for at, took in samples["appends"] if since <= at <= until],
        "refused": samples["refused"],
    }


def wait_sampling(rss: Rss, seconds: float) -> None:
    """Sleep, reading the server's RSS every 0.2 s."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rss.now()
        time.sleep(0.2)


def one(name: str, url: str, root: Path) -> None:
    """Every figure over one database backend."""
    start = time.perf_counter()
    plan = asyncio.run(prepare(root, url))
    emit(f"GC load: generate {ROWS} exports with files ({name})", time.perf_counter() - start, "s")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
    env.update(
        EDITGRAPH_DATABASE_URL=url,
        EDITGRAPH_MEDIA_ROOT=str(root / "uploads"),
        EDITGRAPH_DATA_DIR=str(root / "data"),
        EDITGRAPH_RATE_PROXIES="100000",
        EDITGRAPH_SUBSCRIPTIONS_PER_USER="1000",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "editgraph.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base)
        rss = Rss(server.pid)
        wait_sampling(rss, 2.0)
        rss_cold = rss.now()
        # The baseline is a warm server: a first round of the same clients leaves what the
        # next round reuses and does not add to (pymalloc's arenas at the subscribers' peak,
        # about 50 KiB a subscriber; each pooled SQLite connection's caches and thread heap).
        clients = Load(base, plan)
        wait_sampling(rss, WARMUP_S)
        clients.stop()
        wait_sampling(rss, SETTLE_S)
        rss_idle = rss.now()

        # Baseline: the same load, no GC.
        rss.peak = 0.0
        clients = Load(base, plan)
        wait_sampling(rss, WARMUP_S)
        since = time.time()
        wait_sampling(rss, BASELINE_S)
        baseline = window(clients.stop(), since, time.time())
        rss_with_clients = rss.peak
        wait_sampling(rss, SETTLE_S)  # the bus gives memory back a moment after a burst leaves
        rss_after_clients = rss.now()

        rss.peak = 0.0
        clients = Load(base, plan)
        wait_sampling(rss, WARMUP_S)
        since, started = time.time(), time.perf_counter()
        run = gql(
            base,
            plan["admin"],
            "mutation { gcFullCycle(confirm: true, daysInArchive: 0) { id } }",
        )["gcFullCycle"]
        answered = time.perf_counter() - started
        status = "RUNNING"
        while status == "RUNNING":
            wait_sampling(rss, 0.5)
            done = gql(
                base,
                plan["admin"],
                "query($id: ID!) { gcRun(id: $id) { status total marked archived deleted } }",
                {"id": run["id"]},
            )["gcRun"]
            status = done["status"]
        gc_seconds = time.perf_counter() - started
        during = window(clients.stop(), since, time.time())
        rss_with_gc = rss.peak
        wait_sampling(rss, SETTLE_S)
        rss_after_gc = rss.now()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    emit(f"gcFullCycle mutation answered ({name})", answered, "s", run=done)
    emit(f"GC full cycle over {ROWS} exports under load ({name})", gc_seconds, "s")
    for what, samples in (("/healthz", "probes"), ("appendOps", "appends")):
        emit(
            f"{what} p99 during the GC, {SUBSCRIBERS} subscribers, {EDITORS} editors ({name})",
            percentile(during[samples], 99),
            "s",
            baseline=percentile(baseline[samples], 99),
            p50=round(percentile(during[samples], 50), 4),
            baseline_p50=round(percentile(baseline[samples], 50), 4),
            max=round(max(during[samples]), 4),
            samples=len(during[samples]),
        )
    refused = during["refused"] + baseline["refused"]
    emit(f"appendOps that did not save ({name})", len(refused), "appends", first=refused[:3])
    missing = asyncio.run(protected_missing(url, root))
    emit(f"pinned or latest exports without their file after the GC ({name})", missing, "exports")
    emit(
        f"server RSS {SETTLE_S:.0f} s after {SUBSCRIBERS} subscribers left ({name})",
        rss_after_clients,
        "MiB",
        baseline=rss_idle,
        cold_mib=round(rss_cold, 1),
        peak_mib=round(rss_with_clients, 1),
    )
    emit(
        f"server RSS {SETTLE_S:.0f} s after the GC and the clients ({name})",
        rss_after_gc,
        "MiB",
        baseline=rss_idle,
        cold_mib=round(rss_cold, 1),
        peak_mib=round(rss_with_gc, 1),
    )


def main() -> None:
    backends = os.environ.get("EDITGRAPH_BENCH_GC_LOAD_DBS", "sqlite,postgresql").split(",")
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory() as tmp:
            one("sqlite", f"sqlite+aiosqlite:///{Path(tmp) / 'load.db'}", Path(tmp))
    if "postgresql" in backends:
        url = asyncio.run(scratch_postgres("editgraph_bench_gc_load"))
        if url is None:
            emit("GC under load (postgresql)", 0, "skipped", reason="no PostgreSQL on 127.0.0.1")
            return
        with tempfile.TemporaryDirectory() as tmp:
            one("postgresql", url, Path(tmp))


if __name__ == "__main__":
    main()

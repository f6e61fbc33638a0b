"""appendOps, and a read of 100 versions with their ops and proxies, under load: `editgraph
serve` in EDITGRAPH_WORKERS processes (2 here) as users run it, driven by `hey` in its own
process. The baseline of each figure is the same database work in bare Starlette endpoints
with plain SQL (bench/plain_app.py) on the same uvicorn, processes, machine and load.

After the appends, the project's versions must be exactly 0..N: no append lost or doubled."""

import asyncio
import csv
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from bench.common import emit, percentile, scratch_postgres
from editgraph.redis_embed import EmbeddedRedis, free_port
from jobs.queue import ArqQueue, connect
from models.db import Database
from models.migrate import upgrade
from models.store import MediaStore
from resolvers import ids, users, versions, videos

PROCESSES = int(os.environ.get("EDITGRAPH_BENCH_SERVER_PROCESSES", "2"))
APPENDS = int(os.environ.get("EDITGRAPH_BENCH_APPENDS", "3000"))
READS = int(os.environ.get("EDITGRAPH_BENCH_READS", "3000"))
WRITERS, READERS = 32, 64
SPREAD = 8  # projects the second append load is spread over (WRITERS // SPREAD clients each)
APPEND = """mutation($p: ID!, $ops: [OpInput!]!) { appendOps(projectId: $p, ops: $ops) {
  __typename ... on OpsAppended { version { number } } } }"""
HISTORY = """query($p: ID!) { project(id: $p) { versions(first: 100) { nodes {
  number ops { type params } proxy { status url } } } } }"""


@dataclass
class Run:
    """What hey measured: each request's seconds and status, and the wall time."""

    latencies: list[float]
    statuses: list[int]
    wall: float

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall


def hey(
    url: str, *, n: int, c: int, bodies: list[dict[str, object]] | None, token: str = ""
) -> Run:
    """Drive ``url`` with hey, one process per body, all at once (``n`` requests from ``c``
    clients each): POST each body as JSON, or GET with none. The samples of all of them."""
    argv = ["hey", "-n", str(n), "-c", str(c), "-o", "csv", "-t", "60"]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    files = []
    for body in bodies or [{}]:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(body, fh)
        files.append(Path(fh.name))
    runs = [
        [*argv, "-m", "POST", "-T", "application/json", "-D", str(f), url]
        if bodies is not None
        else [*argv, url]
        for f in files
    ]
    start = time.perf_counter()
    procs = [subprocess.Popen(r, stdout=subprocess.PIPE, text=True) for r in runs]
    outs = [proc.communicate()[0] for proc in procs]
    wall = time.perf_counter() - start
    for f in files:
        f.unlink()
    assert all(proc.returncode == 0 for proc in procs)
    rows = [row for out in outs for row in csv.DictReader(io.StringIO(out))]
    return Run(
        [float(r["response-time"]) for r in rows], [int(r["status-code"]) for r in rows], wall
    )


def wait_for(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def server(argv: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """A server process tree on ``port`` until the block ends."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
    proc = subprocess.Popen(
        argv, env={**clean, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(port)
        base = f"http://127.0.0.1:{port}"
        time.sleep(2)  # every process has started and connected
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def report(name: str, what: str, run: Run, baseline: Run, base_name: str) -> None:
    for pct in (50, 99):
        emit(
            f"{what} latency p{pct} ({name})",
            percentile(run.latencies, pct) * 1000,
            "ms",
            baseline=percentile(baseline.latencies, pct) * 1000,
            baseline_name=base_name,
        )
    emit(
        f"{what} throughput ({name})",
        run.rate,
        "requests/s",
        baseline=baseline.rate,
        baseline_name=base_name,
        non_200=sum(s != 200 for s in run.statuses),
    )


async def prepare(
    url: str, redis_url: str, workdir: Path, source: Path
) -> tuple[str, list[int], list[int]]:
    """A user, a video and SPREAD + 1 projects for editgraph and as many for the baseline."""
    db = Database(url)
    await upgrade(db)
    store = MediaStore(workdir / "uploads")
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
    made = []
    for n in range(2 * (SPREAD + 1)):
        project = await versions.create_project(
            db=db, queue=queue, actor=actor, video_id=video.id, name=f"bench {n}"
        )
        assert project.id is not None
        made.append(project.id)
    await queue.close()
    await db.dispose()
    return token, made[: SPREAD + 1], made[SPREAD + 1 :]


async def numbers(url: str, project: int) -> list[int]:
    db = Database(url)
    try:
        async with db.read() as session:
            rows = await (await session.connection()).execute(
                text("SELECT number FROM versions WHERE project_id = :p ORDER BY number"),
                {"p": project},
            )
            return [n for (n,) in rows]
    finally:
        await db.dispose()


def one_backend(name: str, url: str, redis_url: str, workdir: Path, source: Path) -> None:
    token, ours, plains = asyncio.run(prepare(url, redis_url, workdir, source))
    mine, theirs = ours[0], plains[0]
    env = {
        "EDITGRAPH_DATABASE_URL": url,
        "EDITGRAPH_REDIS_URL": redis_url,
        "EDITGRAPH_MEDIA_ROOT": str(workdir / "uploads"),
        "EDITGRAPH_DATA_DIR": str(workdir / "data"),
        "EDITGRAPH_WORKERS": str(PROCESSES),
        "EDITGRAPH_EMBEDDED_WORKER": "false",
        "EDITGRAPH_RATE_PROXIES": "100000000",
        "EDITGRAPH_MAX_OPS_PER_VERSION": "100000000",
    }
    gid = ids.encode("Project", mine)
    port = free_port()
    serve = [sys.executable, "-m", "editgraph.cli", "serve", "--port", str(port)]
    with server(serve, env, port) as base:
        ops = [{"brightness": {"brightness": 10}}]
        appends = hey(
            base + "/graphql",
            n=APPENDS,
            c=WRITERS,
            bodies=[{"query": APPEND, "variables": {"p": gid, "ops": ops}}],
            token=token,
        )
        spread = hey(
            base + "/graphql",
            n=APPENDS // SPREAD,
            c=WRITERS // SPREAD,
            bodies=[
                {"query": APPEND, "variables": {"p": ids.encode("Project", p), "ops": ops}}
                for p in ours[1:]
            ],
            token=token,
        )
        reads = hey(
            base + "/graphql",
            n=READS,
            c=READERS,
            bodies=[{"query": HISTORY, "variables": {"p": gid}}],
            token=token,
        )
        with urllib.request.urlopen(base + "/healthz", timeout=5) as answer:  # noqa: S310
            assert answer.status == 200
    stored = asyncio.run(numbers(url, mine))
    # hey sends n // c requests from each of its c clients.
    exact = stored == list(range(len(appends.latencies) + 1))
    port = free_port()
    plain = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "bench.plain_app:create",
        "--port",
        str(port),
        "--workers",
        str(PROCESSES),
    ]
    with server(plain, env, port) as base:
        op = [{"type": "brightness", "params": {"brightness": 10}}]
        base_appends = hey(
            base + "/append", n=APPENDS, c=WRITERS, bodies=[{"project": theirs, "ops": op}]
        )
        base_spread = hey(
            base + "/append",
            n=APPENDS // SPREAD,
            c=WRITERS // SPREAD,
            bodies=[{"project": p, "ops": op} for p in plains[1:]],
        )
        base_reads = hey(f"{base}/history?project={theirs}", n=READS, c=READERS, bodies=None)
    where = f"{PROCESSES} server processes, {os.cpu_count()} cores"
    report(name, f"appendOps, {WRITERS} clients, {where}", appends, base_appends, "plain SQL")
    emit(
        f"appendOps: versions exactly 0..N after N appends ({name})",
        float(exact),
        "bool",
        appends=len(appends.latencies),
        stored_versions=len(stored),
    )
    report(
        name,
        f"appendOps spread over {SPREAD} projects, {WRITERS} clients, {where}",
        spread,
        base_spread,
        "plain SQL",
    )
    report(name, f"versions(first: 100) read, {READERS} clients", reads, base_reads, "plain SQL")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis:
        work = Path(tmp)
        source = work / "source.mp4"
        lavfi = "testsrc2=size=320x240:rate=25:duration=5"
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", lavfi, str(source)],
            check=True,
        )
        backends = os.environ.get("EDITGRAPH_BENCH_APPEND_DBS", "sqlite,postgresql").split(",")
        if "sqlite" in backends:
            sqlite = work / "sqlite"
            sqlite.mkdir()
            one_backend(
                "sqlite", f"sqlite+aiosqlite:///{sqlite / 'bench.db'}", redis.url, sqlite, source
            )
        if "postgresql" in backends:
            pg = asyncio.run(scratch_postgres("editgraph_bench"))
            if pg is None:
                emit("appendOps (postgresql)", 0, "skipped", reason="no PostgreSQL on 127.0.0.1")
                return
            postgres = work / "postgresql"
            postgres.mkdir()
            one_backend("postgresql", pg, redis.url, postgres, source)


if __name__ == "__main__":
    main()

"""Faults around Redis and crashes: a hung Redis, a killed embedded Redis, a killed upload."""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from arq.jobs import Job, JobStatus

from editgraph.redis_embed import EmbeddedRedis, free_port
from jobs.events import EventLog
from jobs.queue import connect, deserialize
from jobs.reconcile import reconcile
from jobs.runtime import Runtime
from models.db import Database
from models.store import MediaStore
from resolvers import ids
from tests.helpers.api import APPEND, Api, new_project, settings_of
from tests.helpers.db import SQLITE_ONLY
from tests.helpers.polling import until
from tests.helpers.processes import edit_and_wait_for_proxy

pytestmark = pytest.mark.slow
# Not a speed check: a save that waited on the hung Redis took 20 s (two 10 s socket
# timeouts, under the write lock); one that does not takes milliseconds.
HANG_GUARD_S = 5.0
EXPORT = """mutation($p: ID!) { requestExport(projectId: $p) {
  __typename ... on ExportQueued { export { version status } } } }"""
HISTORY = """query($id: ID!) { project(id: $id) { currentVersion
  versions(first: 20) { nodes { number proxy { status } export { status } } } } }"""


async def saved(api: Api, token: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The answer to a request that must not wait on Redis."""
    async with asyncio.timeout(HANG_GUARD_S):
        return await api.data(token, query, variables)


async def test_edits_save_while_redis_hangs_and_the_reconciler_queues_their_renders(
    app_api: Api,
    tokens: dict[str, str],
    media: dict[str, Path],
    env: dict[str, str],
    db: Database,
    redis_server: EmbeddedRedis,
) -> None:
    api, alice = app_api, tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    number = ids.decode(pid, "Project")
    assert redis_server.process is not None
    redis_pid = redis_server.process.pid
    # Paused, not stopped: connections are accepted and never answered.
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        for level in range(3):
            ops = [{"brightness": {"brightness": level}}]
            appended = (await saved(api, alice, APPEND, {"p": pid, "ops": ops}))["appendOps"]
            assert appended["__typename"] == "OpsAppended"
        # Writers at once: on SQLite each used to hold the write lock while Redis hung.
        together = await asyncio.gather(
            *(
                saved(api, alice, APPEND, {"p": pid, "ops": [{"contrast": {"contrast": level}}]})
                for level in range(3)
            )
        )
        assert [a["appendOps"]["__typename"] for a in together] == ["OpsAppended"] * 3
        exported = (await saved(api, alice, EXPORT, {"p": pid}))["requestExport"]
        assert exported == {
            "__typename": "ExportQueued",
            "export": {"version": 6, "status": "QUEUED"},
        }
        history = (await saved(api, alice, HISTORY, {"id": pid}))["project"]
        # A load balancer asking /healthz gets its answer, not a wait on the hung Redis.
        health = await asyncio.wait_for(api.client.get("/healthz"), timeout=5)
        assert health.status_code == 503 and health.json()["redis"].startswith("error")
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    assert history["currentVersion"] == 6
    nodes = history["versions"]["nodes"]
    assert [v["number"] for v in nodes] == [6, 5, 4, 3, 2, 1, 0]
    assert all(v["proxy"]["status"] == "QUEUED" for v in nodes[:-1])

    # Redis never received those jobs; the reconciler queues them from the database.
    pool = connect(redis_server.url)
    try:
        wanted = [f"proxy:{number}:{v}" for v in range(1, 7)] + [f"export:{number}:6"]

        async def statuses() -> list[JobStatus]:
            return [await Job(j, pool, _deserializer=deserialize).status() for j in wanted]

        assert await statuses() == [JobStatus.not_found] * len(wanted)
        runtime = Runtime(
            config=settings_of(env),
            db=db,
            store=MediaStore(Path(env["EDITGRAPH_MEDIA_ROOT"])),
            redis=pool,
            events=EventLog(pool),
        )
        assert await reconcile({"runtime": runtime}) == len(wanted)
        assert await statuses() == [JobStatus.queued] * len(wanted)
    finally:
        await pool.aclose(close_connection_pool=True)


@contextmanager
def serve_process(
    cwd: Path, env: dict[str, str], log: Path, port: int
) -> Iterator[subprocess.Popen[bytes]]:
    """`editgraph serve` until uvicorn is up; SIGTERM on exit (if it still runs)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
    argv = [sys.executable, "-m", "editgraph.cli", "serve", "--port", str(port)]
    before = log.read_bytes().count(b"Uvicorn running") if log.exists() else 0
    with (
        log.open("ab") as out,
        subprocess.Popen(
            argv, cwd=cwd, env={**clean, **env}, stdout=out, stderr=subprocess.STDOUT
        ) as proc,
    ):
        try:
            deadline = time.monotonic() + 30
            while log.read_bytes().count(b"Uvicorn running") <= before:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)


def redis_children(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The live redis-server children of a serve process."""
    found = []
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            if child.name() == "redis-server" and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def listening(proc: psutil.Process) -> set[int]:
    """The TCP ports a process listens on."""
    return {c.laddr.port for c in proc.net_connections("tcp") if c.status == psutil.CONN_LISTEN}


async def test_serve_restarts_its_embedded_redis_after_a_kill_9(
    tmp_path: Path, media: dict[str, Path]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    env = {"EDITGRAPH_RECONCILE_EVERY_S": "1"}
    with serve_process(tmp_path, env, log, port) as server:
        token = re.search(r"Bearer (eg_\S+)", log.read_text())
        assert token is not None
        (first,) = redis_children(server)
        redis_port = listening(first)
        first.kill()  # kill -9

        async with httpx.AsyncClient(base_url=base, timeout=10) as client:

            async def healthy() -> bool:
                response = await client.get("/healthz")
                return response.status_code == 200

            await until(healthy, within=30, what="/healthz to answer 200 again")
        (second,) = redis_children(server)
        assert second.pid != first.pid
        assert listening(second) == redis_port

        async def restart_logged() -> bool:
            # The supervisor logs once the new child answers, which can be just after /healthz.
            return "embedded redis-server restarted" in log.read_text()

        await until(restart_logged, within=10, what="the restart to be logged")
        # Renders go on: an edit made after the restart gets its proxy.
        url = await asyncio.to_thread(edit_and_wait_for_proxy, base, token[1], media["clip"])
        assert "/media/proxy/" in url


def start_upload(port: int, token: str, declared: int, first: bytes) -> socket.socket:
    """Open a multipart upload of ``declared`` body bytes and send only ``first`` of them."""
    boundary = "editgraphfaults"
    operations = json.dumps(
        {
            "query": "mutation($f: Upload!) { uploadVideo(file: $f) { __typename } }",
            "variables": {"f": None},
        }
    )
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n'
        f'{operations}\r\n--{boundary}\r\nContent-Disposition: form-data; name="map"\r\n\r\n'
        f'{{"0": ["variables.f"]}}\r\n--{boundary}\r\n'
        'Content-Disposition: form-data; name="0"; filename="holiday.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    request = (
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + declared}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(request + head + first)
    return sock


@SQLITE_ONLY  # files in temp/, not the database
async def test_a_kill_9_mid_upload_leaves_nothing_in_temp_after_the_next_start(
    env: dict[str, str], tokens: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    grace_s = 8  # longer than a server takes to start (on a busy machine too): fresh stays fresh
    settings = {
        **env,
        "EDITGRAPH_EMBEDDED_WORKER": "false",
        "EDITGRAPH_TEMP_GRACE_S": str(grace_s),
    }
    temp = Path(env["EDITGRAPH_MEDIA_ROOT"]) / "temp"
    with serve_process(tmp_path, settings, log, port) as server:
        sock = start_upload(port, tokens["alice"], 50_000_000, b"\0" * 2_000_000)

        async def staged() -> list[Path]:
            return [p for p in temp.glob("upload-*.part") if p.stat().st_size > 0]

        (partial,) = await until(staged, within=20, what="the upload to reach temp/")
        server.kill()  # kill -9, mid-upload
        server.wait()
        sock.close()
    assert partial.exists(), "a kill -9 leaves the partial upload behind"
    await asyncio.sleep(grace_s + 0.5)  # older than the grace period now
    # An upload another server is streaming right now: fresh, so it stays.
    live = temp / "upload-another-server.part"
    live.write_bytes(b"\0" * 1000)
    with serve_process(tmp_path, settings, log, port):
        assert "removed 1 stale temp entries" in log.read_text()
    assert sorted(p.name for p in temp.iterdir()) == [live.name]

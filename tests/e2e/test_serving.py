"""`editgraph serve` with EDITGRAPH_WORKERS=2: two server processes on one port, appends
from many clients spread over both, a killed process replaced, and a clean stop."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import httpx
import psutil
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from editgraph.redis_embed import free_port
from tests.helpers.api import Api, new_project
from tests.helpers.db import SQLITE_ONLY
from tests.helpers.polling import until

CLIENTS = 12
APPENDS_EACH = 6
APPEND = """mutation($p: ID!, $ops: [OpInput!]!) { appendOps(projectId: $p, ops: $ops) {
  __typename ... on OpsAppended { version { number } } } }"""
VERSIONS = "query($p: ID!) { project(id: $p) { versions(first: 100) { nodes { number } } } }"


def start(env: dict[str, str], log: Path, port: int, cwd: Path) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
    argv = [sys.executable, "-m", "editgraph.cli", "serve", "--port", str(port)]
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env={**clean, "EDITGRAPH_WORKERS": "2", "EDITGRAPH_EMBEDDED_WORKER": "false", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def servers(parent: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The live server processes (spawned Pythons) of a serve process."""
    found = []
    for child in psutil.Process(parent.pid).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != "zombie":
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


async def healthy(base: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(base + "/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=40)


async def test_appends_through_two_server_processes_number_versions_exactly_1_to_n(
    live: tuple[Api, str],
    tokens: dict[str, str],
    media: dict[str, Path],
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    api, _ = live
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start(env, tmp_path / "serve.log", port, tmp_path)
    try:
        await until(lambda: healthy(base), within=30, what="the two servers to answer")
        spawned = servers(proc)
        assert len(spawned) == 2
        failures: list[str] = []
        headers = {"Authorization": f"Bearer {alice}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:

            async def editor(n: int) -> None:
                for i in range(APPENDS_EACH):
                    ops = [{"brightness": {"brightness": (n * APPENDS_EACH + i) % 100}}]
                    answer = await client.post(
                        "/graphql", json={"query": APPEND, "variables": {"p": pid, "ops": ops}}
                    )
                    body = answer.json()
                    if answer.status_code != 200 or "errors" in body:
                        failures.append(answer.text)

            await asyncio.gather(*(editor(n) for n in range(CLIENTS)))
        assert failures == []
        listed = await api.data(alice, VERSIONS, {"p": pid})
        numbers = sorted(v["number"] for v in listed["project"]["versions"]["nodes"])
        assert numbers == list(range(CLIENTS * APPENDS_EACH + 1))
    finally:
        stop(proc)
    _, alive = psutil.wait_procs(spawned, timeout=10)
    assert alive == []


@SQLITE_ONLY
async def test_a_killed_server_process_is_replaced_while_the_other_answers(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    proc = start(env, log, port, tmp_path)
    try:
        await until(lambda: healthy(base), within=30, what="the two servers to answer")
        first, second = servers(proc)
        first.kill()  # kill -9
        answers = []
        deadline = time.monotonic() + 20

        async def replaced() -> bool:
            answers.append(await healthy(base))
            alive = servers(proc)
            return len(alive) == 2 and first.pid not in {p.pid for p in alive}

        await until(replaced, within=20, what="a new server process")
        assert time.monotonic() < deadline
        # The surviving process answered while the other was down and coming back.
        assert all(answers), answers
        assert second.is_running()
        assert f"(pid {first.pid}) exited with -9; restarting it" in log.read_text()
        survivors = servers(proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)
        assert proc.returncode == 0
        _, alive = psutil.wait_procs(survivors, timeout=10)
        assert alive == []
    finally:
        stop(proc)


@SQLITE_ONLY
async def test_websocket_compression_is_off_unless_asked_for(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Browsers always offer per-message deflate; the server takes it only when
    EDITGRAPH_WS_DEFLATE is on (it costs memory on every idle connection)."""
    negotiated = {}
    for deflate in ("false", "true"):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        settings = {**env, "EDITGRAPH_WORKERS": "1"}
        if deflate == "true":
            settings["EDITGRAPH_WS_DEFLATE"] = "true"
        proc = start(settings, tmp_path / f"serve-{deflate}.log", port, tmp_path)
        try:
            await until(partial(healthy, base), within=30, what="the server to answer")
            async with connect(
                f"ws://127.0.0.1:{port}/graphql",
                subprotocols=[Subprotocol("graphql-transport-ws")],
                compression="deflate",
            ) as ws:
                assert ws.response is not None
                negotiated[deflate] = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        finally:
            stop(proc)
    assert negotiated["false"] == ""
    assert negotiated["true"].startswith("permessage-deflate")

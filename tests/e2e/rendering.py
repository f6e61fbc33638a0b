"""Harness for rendering tests: a private Redis, a real worker process, polling helpers."""

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import Api

PROJECT = """query($id: ID!) { project(id: $id) { id currentVersion
  latestProxy { id version status progress url width height durationSeconds bytes error attempts }
  latestExport { id version status progress url bytes latest pinned gcState
                 render { id status error attempts width height durationSeconds } }
  exports { id version status } } }"""


@contextmanager
def worker_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`editgraph worker` as a separate process, stopped (SIGTERM, then SIGKILL) on exit."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
    with (
        log.open("ab") as out,
        subprocess.Popen(
            [sys.executable, "-m", "editgraph.cli", "worker"],
            env={**clean, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        ) as proc,
    ):
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def ffmpeg_children(proc: subprocess.Popen[bytes], rendering: str = "") -> list[psutil.Process]:
    """ffmpeg processes started by a worker (and still alive), optionally only those whose
    command line contains ``rendering`` (e.g. ``render-7-``, the temp file of render 7)."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            ffmpeg = child.is_running() and child.name() == "ffmpeg"
            if ffmpeg and rendering in " ".join(child.cmdline()):
                found.append(child)
    return found


def no_ffmpeg_left(media_root: Path) -> bool:
    """No ffmpeg working on files under ``media_root`` is still running."""
    for proc in psutil.process_iter(["name", "status", "cmdline"]):
        info = proc.info
        if info["name"] != "ffmpeg" or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(str(media_root) in arg for arg in info["cmdline"] or []):
            return False
    return True


async def until(
    check: Callable[[], Awaitable[Any]], *, within: float = 90, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last saw {last!r}")


async def project(api: Api, token: str, project_id: str) -> dict[str, Any]:
    """The project with its latest proxy and export."""
    data: dict[str, Any] = (await api.data(token, PROJECT, {"id": project_id}))["project"]
    return data


@contextmanager
def server_process(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """`editgraph serve` as another process (no worker of its own); yields its base URL."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
    settings = {**env, "EDITGRAPH_EMBEDDED_WORKER": "false"}
    argv = [sys.executable, "-m", "editgraph.cli", "serve", "--port", str(port)]
    with (
        log.open("ab") as out,
        subprocess.Popen(
            argv, env={**clean, **settings}, stdout=out, stderr=subprocess.STDOUT
        ) as proc,
    ):
        try:
            deadline = time.monotonic() + 30
            while b"Uvicorn running" not in log.read_bytes():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=20)

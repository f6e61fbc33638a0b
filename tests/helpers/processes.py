"""editgraph as separate processes (`editgraph worker`, `editgraph serve`) and their ffmpegs:
for the tests that kill, restart or start the real command line."""

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil


def _clean_environment() -> dict[str, str]:
    """This process's environment without any ``EDITGRAPH_*`` setting of the machine."""
    return {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}


@contextmanager
def worker_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`editgraph worker` as a separate process, stopped (SIGTERM, then SIGKILL) on exit."""
    with (
        log.open("ab") as out,
        subprocess.Popen(
            [sys.executable, "-m", "editgraph.cli", "worker"],
            env={**_clean_environment(), **env},
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


@contextmanager
def server_process(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """`editgraph serve` as another process (no worker of its own); yields its base URL."""
    settings = {**env, "EDITGRAPH_EMBEDDED_WORKER": "false"}
    argv = [sys.executable, "-m", "editgraph.cli", "serve", "--port", str(port)]
    with (
        log.open("ab") as out,
        subprocess.Popen(
            argv, env={**_clean_environment(), **settings}, stdout=out, stderr=subprocess.STDOUT
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


def ffmpeg_children(
    worker: subprocess.Popen[bytes] | None = None, rendering: str = ""
) -> list[psutil.Process]:
    """ffmpeg processes started by a worker process (default: this process, whose in-process
    worker renders) and still alive, optionally only those whose command line contains
    ``rendering`` (e.g. ``render-7-``, the temp file of render 7)."""
    try:
        children = psutil.Process(worker.pid if worker else None).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            running = child.is_running() and child.status() != psutil.STATUS_ZOMBIE
            if running and child.name() == "ffmpeg" and rendering in " ".join(child.cmdline()):
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


def edit_and_wait_for_proxy(base: str, token: str, source: Path) -> str:
    """Upload, create a project, append an edit; return the proxy URL once it is DONE."""
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=auth, timeout=30) as client:
        operations = json.dumps(
            {
                "query": "mutation($f: Upload!) { uploadVideo(file: $f) { ... on VideoUploaded { video { id } } } }",
                "variables": {"f": None},
            }
        )
        with source.open("rb") as fh:
            uploaded = client.post(
                "/graphql",
                data={"operations": operations, "map": '{"0": ["variables.f"]}'},
                files={"0": (source.name, fh, "video/mp4")},
            ).json()
        video = uploaded["data"]["uploadVideo"]["video"]["id"]

        def gql(query: str, variables: dict[str, object]) -> dict[str, Any]:
            body = client.post("/graphql", json={"query": query, "variables": variables}).json()
            data: dict[str, Any] = body["data"]
            return data

        created = gql(
            'mutation($v: ID!) { createProject(videoId: $v, name: "cli") { ... on ProjectCreated { project { id } } } }',
            {"v": video},
        )
        pid = created["createProject"]["project"]["id"]
        gql(
            "mutation($p: ID!) { appendOps(projectId: $p, ops: [{grayscale: true}]) { __typename } }",
            {"p": pid},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            latest = gql(
                "query($p: ID!) { project(id: $p) { latestProxy { version status url } } }",
                {"p": pid},
            )["project"]["latestProxy"]
            if latest and latest["version"] == 1 and latest["status"] == "DONE":
                url: str = latest["url"]
                return url
            time.sleep(0.3)
    raise AssertionError("the embedded worker did not render the proxy")

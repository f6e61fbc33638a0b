"""The command line, as a person runs it: user create, migrate, and serve with embedded Redis."""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from editgraph.redis_embed import free_port
from tests.helpers.processes import edit_and_wait_for_proxy


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
    return subprocess.run(
        [sys.executable, "-m", "editgraph.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def post(url: str, token: str, query: str) -> dict[str, object]:
    request = urllib.request.Request(
        url,
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body: dict[str, object] = json.loads(response.read())
    return body


def test_user_create_prints_the_token_alone_on_the_last_line(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "user", "create", "dana", "--admin")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("eg_") and " " not in token
    # Only the hash is stored: the token's text appears nowhere in the database file.
    assert token.encode() not in (tmp_path / "data" / "editgraph.db").read_bytes()
    migrate = run_cli(tmp_path, "migrate")
    assert migrate.returncode == 0 and "up to date" in migrate.stdout


@contextmanager
def serving(cwd: Path, port: int) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """Run `editgraph serve` until uvicorn is up; SIGTERM it on exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
    argv = [sys.executable, "-m", "editgraph.cli", "serve", "--port", str(port)]
    with subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as server:
        lines: list[str] = []
        try:
            assert server.stdout is not None
            while not any("Uvicorn running" in line for line in lines):
                line = server.stdout.readline()
                assert line, f"serve exited early: {lines}"
                lines.append(line)
            yield server, lines
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=20)


@pytest.mark.slow
def test_serve_starts_its_own_redis_answers_and_cleans_up(
    tmp_path: Path, media: dict[str, Path]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serving(tmp_path, port) as (server, lines):
        assert f"GraphiQL: {base}/graphql" in "".join(lines)
        token = next(li.split("Bearer ")[1].strip() for li in lines if "Bearer " in li)
        children = psutil.Process(server.pid).children(recursive=True)
        assert any("redis-server" in c.name() for c in children)

        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as r:
            assert r.status == 200
            assert json.loads(r.read()) == {"status": "ok", "database": "ok", "redis": "ok"}
        me = post(f"{base}/graphql", token, "{ me { name isAdmin } }")
        assert me == {"data": {"me": {"name": "admin", "isAdmin": True}}}
        page = urllib.request.Request(f"{base}/graphql", headers={"Accept": "text/html"})
        with urllib.request.urlopen(page, timeout=10) as r:
            page_html = r.read()
            assert b"graphiql" in page_html.lower()
            assert b'src="/graphiql/page.js"' in page_html
        # Subscriptions from GraphiQL carry the token of its Headers tab.
        with urllib.request.urlopen(f"{base}/graphiql/page.js", timeout=10) as r:
            assert b"wsConnectionParams: auth ? { authorization: auth }" in r.read()
        # The server renders by itself: its in-process worker makes the proxy of an edit.
        url = edit_and_wait_for_proxy(base, token, media["clip"])
        with httpx.Client(base_url=base, timeout=10) as client:
            head = client.get(url, headers={"Range": "bytes=0-7"})
            assert head.status_code == 206
            assert head.content[4:8] == b"ftyp"  # an MP4 a browser can play
    # The private redis-server stopped with the server.
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    assert (tmp_path / "uploads" / "videos").is_dir()
    # A second start finds the admin already there and prints no new token.
    with serving(tmp_path, port) as (_, again):
        assert not any("Bearer" in line for line in again)

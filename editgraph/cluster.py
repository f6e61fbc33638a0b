"""`editgraph cluster`: a whole cluster on one machine, as a team would run it on several.

PostgreSQL (the one given), a Redis, an S3 endpoint on loopback (moto's server) unless a
bucket is given, ``servers`` API processes and ``workers`` render workers. Nothing is
shared but the database, Redis and the bucket: each process has its own cache folder and
no media folder at all. The servers share one signing secret, so a link made by one
opens on another.
"""

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from editgraph.redis_embed import EmbeddedRedis, free_port
from jobs.runner import die_with_parent
from models.db import Database

DEFAULT_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/editgraph_cluster"
BUCKET = "editgraph-media"
# moto accepts any credentials; with a real bucket, the AWS_* variables of the caller.
LOOPBACK_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "editgraph-cluster",
    "AWS_SECRET_ACCESS_KEY": "editgraph-cluster-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class Process:
    """One child of the cluster and where its output goes."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: "subprocess.Popen[bytes] | None" = None
    _out: IO[bytes] | None = None

    def start(self) -> None:
        """Start (or start again) the child, its output appended to its log."""
        self._out = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the launcher alone
            preexec_fn=die_with_parent,  # and a launcher killed outright takes them along
        )

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._close()

    def _close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL if it does not end in time."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()


@dataclass
class Cluster:
    """Start with ``with Cluster(folder, database_url=…) as cluster``; everything it
    started stops when the block ends."""

    folder: Path
    database_url: str = DEFAULT_DATABASE
    servers: int = 2
    workers: int = 3
    storage_url: str | None = None  # a real bucket; unset: moto's server on loopback
    s3_endpoint_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    redis: EmbeddedRedis | None = None
    children: dict[str, Process] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)

    def __enter__(self) -> "Cluster":
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start(self) -> None:
        self.redis = EmbeddedRedis(self.folder / "redis")
        redis_url = self.redis.start()
        self.redis.supervise()
        shared = {
            **{k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")},
            "EDITGRAPH_DATABASE_URL": self.database_url,
            "EDITGRAPH_REDIS_URL": redis_url,
            "EDITGRAPH_SECRET_KEY": secrets.token_urlsafe(32),
            "EDITGRAPH_EMBEDDED_WORKER": "false",
        }
        if self.storage_url is None:
            shared |= self._loopback_bucket()
        else:
            shared["EDITGRAPH_STORAGE_URL"] = self.storage_url
            if self.s3_endpoint_url:
                shared["EDITGRAPH_S3_ENDPOINT_URL"] = self.s3_endpoint_url
        shared |= self.extra_env
        editgraph = [sys.executable, "-m", "editgraph.cli"]
        migrate = subprocess.run(
            [*editgraph, "migrate"], env=shared, capture_output=True, text=True, check=False
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"migrations failed: {migrate.stderr.strip()[-2000:]}")
        for n in range(1, self.servers + 1):
            port = free_port()
            own = self._own(shared, f"server-{n}") | {"EDITGRAPH_PORT": str(port)}
            self._add(f"server-{n}", [*editgraph, "serve", "--port", str(port)], own)
            # One at a time: the first start of a database creates its admin once.
            self._wait_healthy(f"http://127.0.0.1:{port}")
            self.urls.append(f"http://127.0.0.1:{port}")
        for n in range(1, self.workers + 1):
            self._add(f"worker-{n}", [*editgraph, "worker"], self._own(shared, f"worker-{n}"))

    def _own(self, shared: dict[str, str], name: str) -> dict[str, str]:
        """A process's own folders: its cache and data, nothing another process reads."""
        home = self.folder / name
        return shared | {
            "EDITGRAPH_CACHE_DIR": str(home / "cache"),
            "EDITGRAPH_DATA_DIR": str(home / "data"),
            "EDITGRAPH_MEDIA_ROOT": str(home / "no-media-folder"),
        }

    def _loopback_bucket(self) -> dict[str, str]:
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        moto = shutil.which("moto_server", path=str(Path(sys.executable).parent))
        if moto is None:
            raise RuntimeError("moto_server is missing: `make install` installs it (moto[server])")
        self._add("s3", [moto, "-H", "127.0.0.1", "-p", str(port)], dict(os.environ))
        deadline = time.monotonic() + 30
        while True:
            try:
                request = urllib.request.Request(  # noqa: S310 (an http URL we built)
                    f"{endpoint}/{BUCKET}", method="PUT"
                )
                with urllib.request.urlopen(request, timeout=2):  # noqa: S310 (loopback)
                    break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise RuntimeError("the S3 endpoint did not start") from None
                time.sleep(0.2)
        self.s3_endpoint_url = endpoint
        return {
            "EDITGRAPH_STORAGE_URL": f"s3://{BUCKET}",
            "EDITGRAPH_S3_ENDPOINT_URL": endpoint,
            "EDITGRAPH_S3_REGION": "us-east-1",
            **LOOPBACK_CREDENTIALS,
        }

    def _add(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        process = Process(name, argv, env, self.folder / f"{name}.log")
        self.children[name] = process
        process.start()

    def _wait_healthy(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):  # noqa: S310 (loopback)
                    return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise RuntimeError(f"{url} did not become healthy; see {self.folder}/*.log")

    def stop(self) -> None:
        """Stop every child (workers first, then servers, then S3 and Redis)."""
        for process in sorted(
            self.children.values(), key=lambda p: ("worker" not in p.name, p.name == "s3")
        ):
            process.stop()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None


async def ensure_database(url: str, *, fresh: bool = False) -> None:
    """Create the PostgreSQL database ``url`` names if it does not exist yet (``fresh``:
    drop it first)."""
    target = make_url(url)
    if not target.drivername.startswith("postgresql") or not target.database:
        raise ValueError(f"a cluster runs on PostgreSQL; {url!r} is not a PostgreSQL URL")
    admin = Database(target.set(database="postgres").render_as_string(hide_password=False))
    try:
        async with admin.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            found = await conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
            )
            if fresh:
                await conn.execute(
                    text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
                )
            if fresh or found.first() is None:
                await conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    finally:
        await admin.dispose()


def run(folder: Path, database_url: str, servers: int, workers: int) -> int:
    """Start a cluster, print where everything is, and run until Ctrl-C."""
    # The loopback bucket and Redis keep nothing across runs: the default database starts
    # empty too, or its rows would name media that is gone. A database given is kept.
    fresh = database_url == DEFAULT_DATABASE
    try:
        asyncio.run(ensure_database(database_url, fresh=fresh))
    except (OSError, ValueError, SQLAlchemyError) as exc:
        print(
            f"editgraph cluster needs PostgreSQL ({exc}).\n"
            "  Give one with --database-url postgresql+asyncpg://USER@HOST:PORT/DB, or start\n"
            "  one on 127.0.0.1:5432 (Debian: apt-get install postgresql).",
            file=sys.stderr,
        )
        return 2
    with Cluster(folder, database_url=database_url, servers=servers, workers=workers) as c:
        print(f"PostgreSQL: {database_url}" + (" (emptied for this run)" if fresh else ""))
        print(f"Redis:      {c.redis.url if c.redis else '?'}")
        print(f"S3:         {c.s3_endpoint_url or 'the bucket given'} (bucket {BUCKET})")
        for url in c.urls:
            print(f"server:     {url}/graphql")
        print(f"workers:    {workers}, each with its own cache under {folder}")
        print(f"logs:       {folder}/*.log")
        print("an admin token: `editgraph user create NAME --admin` with the same database")
        print("Ctrl-C stops the cluster.")
        sys.stdout.flush()
        try:
            while all(p.popen and p.popen.poll() is None for p in c.children.values()):
                time.sleep(1)
            dead = [p.name for p in c.children.values() if p.popen and p.popen.poll() is not None]
            print(f"stopped: {', '.join(dead)} exited; see its log", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("stopping the cluster")
            return 0

"""A private redis-server child for single-machine installs; no other Redis is touched."""

import logging
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

import redis

from jobs.runner import die_with_parent

log = logging.getLogger(__name__)
# Restarts wait 0.5 s, then twice as long each time up to 30 s; a child that ran this long
# was healthy, and the next restart is quick again.
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """Start redis-server on a free loopback port; stop it on exit. Nothing is persisted.
    With ``supervise()``, a child that dies is started again on the same port."""

    def __init__(self, workdir: Path, *, port: int = 0, startup_timeout: float = 10.0) -> None:
        self.workdir = workdir
        self.startup_timeout = startup_timeout
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of the running child."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        """Start the child and wait until it answers PING; returns its URL."""
        self._stopping.clear()
        with self._lock:
            try:
                self._spawn()
            except RuntimeError:
                self._kill()
                self.process = None
                raise
        return self.url

    def supervise(self) -> None:
        """Restart the child whenever it exits without ``stop()``, with backoff; log each."""
        if self._supervisor is None or not self._supervisor.is_alive():
            # The thread also spawns the restarted children: they die with it (see runner).
            self._supervisor = threading.Thread(
                target=self._watch, name="embedded-redis-supervisor", daemon=True
            )
            self._supervisor.start()

    def stop(self) -> None:
        """Stop supervising, terminate the child (and wait for it)."""
        self._stopping.set()
        with self._lock:
            self._kill()
            self.process = None
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(timeout=10)

    def _spawn(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: run `make install`, or install the "
                "redis-server package, or set EDITGRAPH_REDIS_URL to a Redis you run"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--loglevel",
                "warning",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + self.startup_timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the embedded redis-server did not start") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _watch(self) -> None:
        backoff = RESTART_FIRST_S
        while not self._stopping.is_set():
            process = self.process
            if process is None:
                return
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > HEALTHY_AFTER_S:
                backoff = RESTART_FIRST_S
            log.warning(
                "embedded redis-server on port %d exited (code %s); restarting in %.1f s",
                self.port,
                code,
                backoff,
            )
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, RESTART_MAX_S)
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._spawn()
                except (RuntimeError, OSError) as exc:
                    # Try again after the next backoff (process.wait() returns at once).
                    self._kill()
                    log.error("embedded redis-server did not restart: %s", exc)
                    continue
            self.restarts += 1
            log.warning(
                "embedded redis-server restarted on %s (restart %d); the reconciler re-queues "
                "what it forgot",
                self.url,
                self.restarts,
            )

    def __enter__(self) -> "EmbeddedRedis":
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

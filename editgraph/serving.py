"""The HTTP server as ``editgraph serve`` runs it: uvicorn in one process, or in
``EDITGRAPH_WORKERS`` processes sharing one listening socket, each with its own event loop,
database pool and Redis clients (they share nothing else: events reach every process's
subscribers through Redis)."""

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

from editgraph import logs
from editgraph.app import create_app
from editgraph.media import RedactMediaLinks
from editgraph.metrics import parse_addr
from editgraph.settings import Settings
from jobs.runner import die_with_parent
from jobs.worker import run_forever

log = logging.getLogger(__name__)
RESTART_BACKOFF_S = (0.5, 1, 2, 5, 10)  # a process that keeps dying is restarted ever slower
HEALTHY_AFTER_S = 30.0  # a process that ran this long starts the backoff over when it dies
QUICK_FAILURES = 5  # this many deaths in a row, each within HEALTHY_AFTER_S: give up, exit 1
STOP_TIMEOUT_S = 30.0  # graceful shutdown (open requests, websockets) before SIGKILL


def exit_on_signal(signum: int, _frame: object) -> None:
    """SIGTERM as SystemExit: the ``finally`` blocks run (the render worker hands back its
    renders, the embedded Redis stops). uvicorn restores this handler after its graceful
    shutdown and raises the signal again."""
    raise SystemExit(128 + signum)


def uvicorn_config(settings: Settings, host: str, port: int, log_level: str) -> uvicorn.Config:
    """How uvicorn runs the app; websocket compression only where it is asked for (it costs
    about 40 KiB of server memory per connection, and browsers always offer it)."""
    return uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # editgraph.logs configured every logger, uvicorn's too
        ws_per_message_deflate=settings.ws_deflate,
    )


async def serve_one(
    settings: Settings,
    host: str,
    port: int,
    log_level: str,
    *,
    sockets: list[socket.socket] | None = None,
    worker: bool,
) -> None:
    """One server process: uvicorn on ``host:port`` (or on inherited sockets), with the
    embedded render worker beside it when ``worker``."""
    config = uvicorn_config(settings, host, port, log_level)
    # After Config, which sets up uvicorn's loggers: signed media links stay out of the log.
    logging.getLogger("uvicorn.access").addFilter(RedactMediaLinks())
    server = uvicorn.Server(config)
    renders = asyncio.create_task(run_forever(settings)) if worker else None
    try:
        await server.serve(sockets=sockets)
    finally:
        if renders is not None:
            renders.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renders


def _child(
    settings: Settings, sock: socket.socket, log_level: str, worker: bool, parent: int
) -> None:  # pragma: no cover - runs in a spawned process; tests drive it through `serve`
    die_with_parent()
    if os.getppid() != parent:  # the supervisor died before the line above took effect
        return
    signal.signal(signal.SIGTERM, exit_on_signal)
    logs.configure(settings.log_format, log_level)
    asyncio.run(serve_one(settings, "", 0, log_level, sockets=[sock], worker=worker))


class Processes:
    """``count`` server processes on one socket, restarted (with backoff) if one dies, and
    stopped together. Process 0 also runs the embedded render worker, if it is on."""

    def __init__(self, settings: Settings, host: str, port: int, log_level: str) -> None:
        self.settings = settings
        self.log_level = log_level
        # Bound here, once: every process accepts on it (the kernel spreads the connections).
        self.socket = uvicorn.Config(
            app="editgraph.app:create_app", host=host, port=port
        ).bind_socket()
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess | None] = [None] * settings.workers
        self.started = [0.0] * settings.workers
        self.deaths = [0] * settings.workers  # in a row, each soon after its start
        self.restart_at: list[float | None] = [None] * settings.workers
        self.stopping = False
        self.failed = False

    def _start(self, index: int) -> None:
        worker = index == 0 and self.settings.embedded_worker
        settings = self.settings
        if settings.metrics_addr:  # one metrics listener per process: port + index
            host, port = parse_addr(settings.metrics_addr, offset=index)
            host = f"[{host}]" if ":" in host else host
            settings = settings.model_copy(update={"metrics_addr": f"{host}:{port}"})
        process = self.context.Process(
            target=_child,
            args=(settings, self.socket, self.log_level, worker, os.getpid()),
            name=f"editgraph-server-{index}",
        )
        process.start()
        self.processes[index] = process
        self.started[index] = time.monotonic()
        self.restart_at[index] = None

    def run(self) -> int:
        """Start them all and keep them running until SIGTERM or SIGINT (0), or until one
        keeps dying right after its start (1: something outside is wrong, say so)."""

        def stop(signum: int, _: FrameType | None) -> None:
            self.stopping = True

        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(len(self.processes)):
                self._start(index)
            while not self.stopping and not self.failed:
                time.sleep(0.2)
                self._tend()
        finally:
            self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.socket.close()
        return 1 if self.failed else 0

    def _tend(self) -> None:
        """Schedule a restart for each process that died; start those whose time came."""
        now = time.monotonic()
        for index, process in enumerate(self.processes):
            if self.stopping or process is None or process.is_alive():
                continue
            when = self.restart_at[index]
            if when is None:
                if now - self.started[index] >= HEALTHY_AFTER_S:
                    self.deaths[index] = 0
                self.deaths[index] += 1
                if self.deaths[index] >= QUICK_FAILURES:
                    print(
                        f"server process {index} exited {QUICK_FAILURES} times in a row soon"
                        f" after starting (last exit code {process.exitcode}); stopping",
                        file=sys.stderr,
                        flush=True,
                    )
                    self.failed = True
                    return
                delay = RESTART_BACKOFF_S[min(self.deaths[index], len(RESTART_BACKOFF_S)) - 1]
                self.restart_at[index] = now + delay
                print(
                    f"server process {index} (pid {process.pid}) exited with"
                    f" {process.exitcode}; restarting it in {delay} s",
                    file=sys.stderr,
                    flush=True,
                )
            elif now >= when:
                self._start(index)

    def _stop_all(self) -> None:
        running = [p for p in self.processes if p is not None and p.is_alive()]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                assert process.pid is not None
                process.terminate()  # SIGTERM: uvicorn's graceful shutdown
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()

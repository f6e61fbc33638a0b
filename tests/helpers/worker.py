"""The arq worker of `editgraph worker`, run in the test's own event loop.

Render tests that need no separate process (everything but kill -9, restarts and the command
line) use it: no interpreter to start, and jobs start as soon as they are queued.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

from arq import ArqRedis, Worker

from jobs.runtime import WorkerSettings
from jobs.worker import create_worker


class WorkerFactory(Protocol):
    """The ``run_worker`` fixture: ``async with run_worker(**changes)`` runs a worker with the
    test's settings changed by keyword."""

    def __call__(self, **changes: Any) -> AbstractAsyncContextManager[Worker]: ...


@asynccontextmanager
async def worker_in_process(config: WorkerSettings) -> AsyncIterator[Worker]:
    """The same worker `editgraph worker` runs (functions, cron, msgpack, start-up), polling in
    a task of this loop; on exit its running jobs are cancelled (their ffmpeg killed)."""
    worker = create_worker(config, handle_signals=False)
    polling = asyncio.create_task(worker.main(), name="editgraph-test-worker")
    try:
        yield worker
    finally:
        # Stop picking jobs first, then end the running ones and wait for their cleanup.
        # Worker.close() would not wait for them, and closes Redis with a deprecated call.
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        running = list(worker.tasks.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        pool: ArqRedis | None = worker.pool
        if pool is not None:  # None when it was stopped before it connected
            if worker.on_shutdown is not None:
                await worker.on_shutdown(worker.ctx)
            await pool.delete(worker.health_check_key)
            await pool.aclose(close_connection_pool=True)

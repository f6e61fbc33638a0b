"""The arq worker: render functions, the reconciler cron, msgpack, and its start-up."""

import asyncio
import contextlib
import logging
from typing import Any

from arq import Worker, cron, func
from arq.connections import RedisSettings
from redis.exceptions import RedisError

from jobs.events import EventLog
from jobs.gc_report import gc_report
from jobs.mezzanine import mezzanine
from jobs.queue import deserialize, serialize
from jobs.reconcile import reconcile
from jobs.render import proxy_part, render
from jobs.runner import timeout_for
from jobs.runtime import Runtime, WorkerSettings
from models.db import Database

log = logging.getLogger(__name__)


def create_worker(config: WorkerSettings, *, handle_signals: bool = True) -> Worker:
    """A worker running ``config.render_concurrency`` jobs at a time."""

    async def startup(ctx: dict[str, Any]) -> None:
        store = config.store()
        store.ensure_layout()
        ctx["runtime"] = Runtime(
            config=config,
            db=Database(config.database_url),
            store=store,
            redis=ctx["redis"],
            events=EventLog(ctx["redis"], keep=config.events_keep, keep_s=config.events_keep_s),
        )

    async def shutdown(ctx: dict[str, Any]) -> None:
        runtime: Runtime | None = ctx.get("runtime")
        if runtime is not None:
            await runtime.db.dispose()

    # ffmpeg is stopped by our own timeout; arq's is a backstop a little later than the
    # longest one (the timeout scales with the output, up to the longest version).
    longest = timeout_for(
        config.render_timeout_s, config.render_timeout_per_s, config.max_timeline_s
    )
    backstop = longest + 60
    every = max(1, min(60, config.reconcile_every_s))
    return Worker(
        functions=[
            func(render, name="render", timeout=backstop, max_tries=config.render_max_attempts + 3),
            func(mezzanine, name="mezzanine", timeout=backstop, max_tries=2),
            func(proxy_part, name="proxy_part", timeout=backstop, max_tries=1),
        ],
        cron_jobs=[
            cron(reconcile, name="reconcile", second=set(range(0, 60, every)), run_at_startup=True),
            cron(
                gc_report,
                name="gc-report",
                weekday=config.gc_cron_weekday,
                hour=config.gc_cron_hour,
                minute=0,
                second=0,
            ),
        ],
        redis_settings=RedisSettings.from_dsn(config.worker_redis_url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        max_jobs=config.render_concurrency,
        # A worker looks for new jobs this often: the wait a preview adds before its first
        # segment starts (a poll is one ZRANGEBYSCORE on Redis).
        poll_delay=0.05,
        keep_result=3600,
        on_startup=startup,
        on_shutdown=shutdown,
        handle_signals=handle_signals,
    )


async def run_forever(config: WorkerSettings, *, handle_signals: bool = False) -> None:
    """Run a worker; when Redis goes away (a restart), start a fresh one with backoff."""
    backoff = 0.5
    while True:
        worker = create_worker(config, handle_signals=handle_signals)
        try:
            await worker.main()
            return
        except (RedisError, OSError) as exc:
            log.warning("worker lost Redis (%s); starting again in %.1f s", exc, backoff)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await worker.close()
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 10.0)

"""The arq worker: render functions, the reconciler cron, msgpack, and its start-up."""

from typing import Any

from arq import Worker, cron, func
from arq.connections import RedisSettings

from jobs.mezzanine import mezzanine
from jobs.queue import deserialize, serialize
from jobs.reconcile import reconcile
from jobs.render import render
from jobs.runtime import Runtime, WorkerConfig
from models.db import Database
from models.store import MediaStore


def create_worker(config: WorkerConfig, *, handle_signals: bool = True) -> Worker:
    """A worker running ``config.concurrency`` jobs at a time."""

    async def startup(ctx: dict[str, Any]) -> None:
        store = MediaStore(config.media_root)
        store.ensure_layout()
        ctx["runtime"] = Runtime(
            config=config, db=Database(config.database_url), store=store, redis=ctx["redis"]
        )

    async def shutdown(ctx: dict[str, Any]) -> None:
        runtime: Runtime | None = ctx.get("runtime")
        if runtime is not None:
            await runtime.db.dispose()

    # ffmpeg is stopped by our own timeout; arq's is a backstop a little later.
    backstop = config.timeout_s + 60
    every = max(1, min(60, config.reconcile_every_s))
    return Worker(
        functions=[
            func(render, name="render", timeout=backstop, max_tries=config.max_attempts + 3),
            func(mezzanine, name="mezzanine", timeout=backstop, max_tries=2),
        ],
        cron_jobs=[
            cron(reconcile, name="reconcile", second=set(range(0, 60, every)), run_at_startup=True)
        ],
        redis_settings=RedisSettings.from_dsn(config.redis_url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        max_jobs=config.concurrency,
        poll_delay=0.2,
        keep_result=3600,
        on_startup=startup,
        on_shutdown=shutdown,
        handle_signals=handle_signals,
    )

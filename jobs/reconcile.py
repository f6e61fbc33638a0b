"""The reconciler: the database says what must run; re-enqueue whatever Redis forgot."""

import asyncio
import logging
from typing import Any

from arq.constants import in_progress_key_prefix, result_key_prefix
from arq.jobs import Job, JobStatus
from sqlmodel import select

from jobs.queue import ArqQueue, deserialize
from jobs.runtime import Runtime
from models import keys
from models.db import Database
from models.states import RenderStatus
from models.store import MediaStore
from models.tables import Render, utcnow
from resolvers import lifecycle

log = logging.getLogger(__name__)
LIVE = (JobStatus.queued, JobStatus.deferred, JobStatus.in_progress)


async def reconcile(ctx: dict[str, Any]) -> int:
    """Cron job: re-enqueue renders that are pending in the database but not live in Redis."""
    rt: Runtime = ctx["runtime"]
    now = utcnow()
    async with rt.db.read() as session:
        pending = (await session.exec(select(Render).where(lifecycle.claimable(now)))).all()
    queue = ArqQueue(rt.redis)
    repaired = 0
    for render in pending:
        job = Job(render.job_id, rt.redis, _deserializer=deserialize)
        status = await job.status()
        # Only renders whose lease expired are RUNNING here (see the query above).
        if status == JobStatus.in_progress and render.status == RenderStatus.RUNNING:
            # The worker holding it died (no heartbeat for a whole lease): free the job now
            # rather than when arq's in-progress marker times out.
            await rt.redis.delete(in_progress_key_prefix + render.job_id)
            log.info("render %s: its worker stopped heartbeating; running it again", render.id)
            continue
        if status in LIVE:
            continue
        if render.attempts >= rt.config.render_max_attempts:
            reason = f"gave up after {render.attempts} attempts"
            await lifecycle.fail(db=rt.db, announce=rt.events.publish, render=render, reason=reason)
            continue
        if status == JobStatus.complete:
            # The job ran but the database never heard: forget the stale result and run again.
            await rt.redis.delete(result_key_prefix + render.job_id)
        assert render.id is not None
        await queue.enqueue(render.job_id, lifecycle.RENDER_JOB, render.id)
        repaired += 1
    if repaired:
        log.info("reconciler re-enqueued %d render(s)", repaired)
    await clean_temp(db=rt.db, store=rt.store, grace_s=rt.config.temp_grace_s)
    return repaired


async def clean_temp(*, db: Database, store: MediaStore, grace_s: float) -> int:
    """Remove what crashed uploads and renders left in temp/: entries untouched for
    ``grace_s``, except the files of a render still running under that attempt."""
    async with db.read() as session:
        running = set(
            (
                await session.exec(
                    select(Render.id, Render.attempts).where(Render.status == RenderStatus.RUNNING)
                )
            ).all()
        )

    def live(name: str) -> bool:
        return keys.render_of_temp(name) in running

    try:
        removed, freed = await asyncio.to_thread(store.clean_temp, grace_s=grace_s, live=live)
    except OSError as exc:  # a bucket that does not answer: the next round cleans up
        log.warning("temp/ was not cleaned this time: %s", str(exc).splitlines()[0])
        return 0
    if removed:
        log.info("removed %d stale temp entries (%d bytes) left by a crash", removed, freed)
    return removed

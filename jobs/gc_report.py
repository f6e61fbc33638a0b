"""The weekly GC cron: computes candidates and logs them; marks only if told to. Never deletes."""

import logging
from typing import Any

from jobs.runtime import Runtime
from resolvers import gc, gc_policy, gc_runs
from resolvers.errors import GcBusyError

log = logging.getLogger(__name__)


async def gc_report(ctx: dict[str, Any]) -> dict[str, int]:
    """Log what the GC would mark now (and mark it when EDITGRAPH_GC_CRON_MARK is on)."""
    rt: Runtime = ctx["runtime"]
    config = rt.config
    _, count, size = await gc_policy.candidates(
        db=rt.db, days_old=config.gc_days_old, keep_latest=config.gc_keep_latest, first=0
    )
    proxies, proxy_bytes = await gc_policy.stale_proxies(db=rt.db, days_old=config.gc_days_old)
    log.info(
        "GC report: %d export(s) (%d bytes) could be marked; %d stale proxies (%d bytes)",
        count,
        size,
        proxies,
        proxy_bytes,
    )
    marked = 0
    if config.gc_cron_mark and count:
        try:
            run = await gc_runs.acquire(
                db=rt.db,
                action="mark",
                actor=None,
                holder="weekly cron",
                params={"daysOld": config.gc_days_old, "keepLatest": config.gc_keep_latest},
            )
        except GcBusyError as exc:
            log.warning("GC report: not marking now: %s", exc.message)
            return {"candidates": count, "bytes": size, "marked": 0}

        async def work(reporter: gc_runs.Reporter) -> None:
            await gc.mark(
                db=rt.db,
                actor=None,
                days_old=config.gc_days_old,
                keep_latest=config.gc_keep_latest,
                reporter=reporter,
            )

        marked = (await gc_runs.execute(rt.db, run, work)).marked
        log.info("GC report: marked %d export(s); an admin archives and deletes them", marked)
    return {"candidates": count, "bytes": size, "marked": marked}

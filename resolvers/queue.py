"""The job queue as the domain sees it: enqueue by a deterministic id, nothing more."""

import logging
from typing import Protocol

from models.tables import Render

log = logging.getLogger(__name__)


class JobQueue(Protocol):
    """Delivery only: the database says what must run; a reconciler repairs lost jobs."""

    async def enqueue(self, job_id: str, function: str, *args: int) -> None:
        """Queue ``function(*args)`` once under ``job_id``; a second enqueue is a no-op."""

    async def announce(self, render: Render) -> None:
        """Tell subscribers that ``render`` was queued."""

    async def admit(self, *, user_id: int, kind: str) -> None:
        """Count one render of ``kind`` for a user; ``RateLimitedError`` when over the limit."""


async def deliver(
    queue: JobQueue, job_id: str, function: str, *args: int, render: Render | None = None
) -> None:
    """Enqueue after commit; if Redis is away the reconciler re-enqueues from the database."""
    try:
        await queue.enqueue(job_id, function, *args)
        if render is not None:
            await queue.announce(render)
    except Exception:  # any transport failure: the row is committed, the reconciler retries
        log.warning("could not enqueue %s now; the reconciler will", job_id, exc_info=True)

"""The job queue as the domain sees it: enqueue by a deterministic id, nothing more."""

import logging
from typing import Protocol

from models.states import RenderKind
from models.tables import Export, Render

log = logging.getLogger(__name__)


class JobQueue(Protocol):
    """Delivery only: the database says what must run; a reconciler repairs lost jobs."""

    async def enqueue(self, job_id: str, function: str, *args: int) -> None:
        """Queue ``function(*args)`` once under ``job_id``; a second enqueue is a no-op.
        Waits on Redis only briefly; call it after commit, never inside a transaction."""

    async def announce(
        self,
        kind: str,
        render: Render,
        export: Export | None = None,
        segments: tuple[int, int] | None = None,
    ) -> None:
        """Tell subscribers what happened to ``render`` (an event kind of ``resolvers.events``);
        waits on Redis only briefly."""

    async def admit(self, *, user_id: int, kind: RenderKind) -> None:
        """Count one render of ``kind`` for a user; ``RateLimitedError`` when over the limit.
        Call it before the transaction that writes the render: a hung Redis must never hold
        the database's write lock. Without an answer from Redis it admits (fails open)."""


async def deliver(queue: JobQueue, job_id: str, function: str, *args: int) -> None:
    """Enqueue after commit; if Redis is away the reconciler re-enqueues from the database."""
    try:
        await queue.enqueue(job_id, function, *args)
    except ConnectionError as exc:  # Redis hung, stopped or unreachable: an expected outage
        log.warning("could not enqueue %s now (%s); the reconciler will", job_id, exc)
    except Exception:  # any other transport failure: the row is committed, the reconciler retries
        log.warning("could not enqueue %s now; the reconciler will", job_id, exc_info=True)

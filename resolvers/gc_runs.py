"""GC runs: one at a time, cluster-wide, each recorded with its progress.

The lock is a lease on the single ``gc_lock`` row, the same on SQLite and PostgreSQL. A run
renews it while it works; if its process dies, the lease runs out and the next run may
start (the dead run is then reported as interrupted). A session-scoped advisory lock would
pin one PostgreSQL connection for the whole run and has no SQLite twin; the row also says
who holds the lock and since when.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from models.db import Database
from models.states import GcRunStatus
from models.tables import Export, GcAudit, GcLock, GcRun, utcnow
from resolvers.errors import GcBusyError, NotFoundError
from resolvers.users import Actor

RUNNING, DONE, FAILED = GcRunStatus.RUNNING, GcRunStatus.DONE, GcRunStatus.FAILED
INTERRUPTED = GcRunStatus.INTERRUPTED
LEASE_S = 60.0


@dataclass
class Tally:
    """What a run has done so far; written to its row as it goes. Bytes are counted the way
    the disk sees them: ``bytes_freed`` when a file's last name goes (a file shared through a
    hard link frees nothing until its last name goes), ``bytes_moved`` for each export that
    got its archive (or restored) name, ``bytes_marked`` for what marking flagged."""

    done: int = 0
    total: int = 0
    marked: int = 0
    archived: int = 0
    deleted: int = 0
    proxies_reclaimed: int = 0
    bytes_marked: int = 0
    bytes_moved: int = 0
    bytes_freed: int = 0


def holder_of(actor: Actor | None, where: str) -> str:
    """A readable name for whoever starts a run."""
    return f"{where} ({actor.name})" if actor else where


async def acquire(
    *,
    db: Database,
    action: str,
    actor: Actor | None,
    holder: str,
    params: dict[str, Any],
    lease_s: float = LEASE_S,
) -> GcRun:
    """Take the GC lock and record a RUNNING run; ``GcBusyError`` while another one holds it."""
    now = utcnow()
    async with db.write() as session:
        # The migration creates the row; make sure it exists (an emptied table), race-free.
        dialect = sqlite if db.is_sqlite else postgresql
        await session.exec(dialect.insert(GcLock).values(id=1).on_conflict_do_nothing())
        # Lock the row first (FOR UPDATE; SQLite's write lock is already held), then decide.
        lock = await session.get(GcLock, 1, with_for_update=True, populate_existing=True)
        assert lock is not None
        if lock.run_id is not None and lock.lease_until is not None and lock.lease_until > now:
            holding = await session.get(GcRun, lock.run_id)
            raise GcBusyError(
                lock.run_id,
                holding.holder if holding else "unknown",
                holding.started_at if holding else now,
            )
        if lock.run_id is not None:
            # Its process stopped renewing the lease: it will never finish.
            await session.exec(
                update(GcRun)
                .where(col(GcRun.id) == lock.run_id, col(GcRun.status) == RUNNING)
                .values(
                    status=INTERRUPTED,
                    finished_at=now,
                    error="its process stopped; files were converged by the next run",
                )
            )
        run = GcRun(
            action=action,
            actor_id=actor.id if actor else None,
            holder=holder[:200],
            params=params,
        )
        session.add(run)
        await session.flush()
        lock.run_id, lock.lease_until = run.id, now + timedelta(seconds=lease_s)
        session.add(lock)
    return run


async def report(db: Database, run_id: int, tally: Tally, lease_s: float = LEASE_S) -> bool:
    """Write progress and renew the lease; False when the lease was lost (stop working)."""
    async with db.write() as session:
        held = await session.exec(
            update(GcLock)
            .where(col(GcLock.id) == 1, col(GcLock.run_id) == run_id)
            .values(lease_until=utcnow() + timedelta(seconds=lease_s))
            .returning(col(GcLock.id))
        )
        if held.scalar_one_or_none() is None:
            return False
        await session.exec(update(GcRun).where(col(GcRun.id) == run_id).values(**tally.__dict__))
    return True


async def release(
    db: Database, run_id: int, tally: Tally, *, status: GcRunStatus, error: str | None = None
) -> None:
    """Record how the run ended and free the lock (if it still holds it)."""
    async with db.write() as session:
        await session.exec(
            update(GcRun)
            .where(col(GcRun.id) == run_id)
            .values(status=status, error=error, finished_at=utcnow(), **tally.__dict__)
        )
        await session.exec(
            update(GcLock)
            .where(col(GcLock.id) == 1, col(GcLock.run_id) == run_id)
            .values(run_id=None, lease_until=None)
        )


class LeaseLost(Exception):
    """Another run took the lock after this one stopped renewing it."""


Work = Callable[["Reporter"], Awaitable[None]]


class Reporter:
    """Handed to a stage: counts progress, and keeps the lease alive while it works."""

    def __init__(
        self,
        db: Database,
        run: GcRun,
        lease_s: float,
        echo: Callable[[Tally], None] | None = None,
    ) -> None:
        assert run.id is not None
        self.db, self.run_id, self.action, self.lease_s = db, run.id, run.action, lease_s
        self.echo = echo
        self.tally = Tally()
        self.lost = False
        self._flushed = 0.0

    async def flush(self) -> None:
        """Write progress now; raise ``LeaseLost`` if another run holds the lock."""
        if not await report(self.db, self.run_id, self.tally, self.lease_s):
            self.lost = True
        if self.echo is not None:
            self.echo(self.tally)
        if self.lost:
            raise LeaseLost(f"GC run {self.run_id} lost its lock")

    async def step(self) -> None:
        """Progress (``tally``) reaches the row at most every second; stop if the lock is lost."""
        now = asyncio.get_running_loop().time()
        if now - self._flushed >= 1.0:
            self._flushed = now
            await self.flush()

    async def keep_alive(self) -> None:
        """Renew the lease every third of it, also while one long statement runs."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            if not await report(self.db, self.run_id, self.tally, self.lease_s):
                self.lost = True
                return


async def execute(
    db: Database,
    run: GcRun,
    work: Work,
    *,
    lease_s: float = LEASE_S,
    echo: Callable[[Tally], None] | None = None,
) -> GcRun:
    """Run a stage under the lock the run holds, then record how it ended and release it."""
    assert run.id is not None
    reporter = Reporter(db, run, lease_s, echo)
    keeper = asyncio.create_task(reporter.keep_alive())
    status, error = DONE, None
    try:
        await work(reporter)
    except LeaseLost as exc:
        status, error = INTERRUPTED, str(exc)
    except asyncio.CancelledError:
        status, error = INTERRUPTED, "stopped with its server; the next run converges its files"
        raise
    except Exception as exc:
        status, error = FAILED, _describe(exc)
        raise
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await asyncio.shield(release(db, run.id, reporter.tally, status=status, error=error))
    return await get_run(db=db, run_id=run.id)


def _describe(exc: Exception) -> str:
    message = getattr(exc, "message", None)
    return str(message) if message else f"an internal error ({type(exc).__name__}); see the log"


async def get_run(*, db: Database, run_id: int) -> GcRun:
    """One GC run, or ``NotFoundError``."""
    async with db.read() as session:
        run = await session.get(GcRun, run_id)
    if run is None:
        raise NotFoundError("GC run", run_id)
    return run


async def recent_runs(*, db: Database, first: int = 20) -> list[GcRun]:
    """The newest runs first."""
    async with db.read() as session:
        rows = await session.exec(
            select(GcRun).order_by(col(GcRun.id).desc()).limit(max(1, min(first, 100)))
        )
        return list(rows.all())


async def exports_of_run(*, db: Database, run_id: int, first: int = 100) -> list[Export]:
    """The first exports a run changed, from its audit rows."""
    changed = (
        select(GcAudit.export_id)
        .where(col(GcAudit.run_id) == run_id, col(GcAudit.export_id).is_not(None))
        .distinct()
    )
    async with db.read() as session:
        rows = await session.exec(
            select(Export).where(col(Export.id).in_(changed)).order_by(col(Export.id)).limit(first)
        )
        return list(rows.all())

"""The database: one async engine, read sessions and serialized write transactions."""

import asyncio
import json
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

# SQLite waits this long for a competing writer before it reports "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Database:
    """An engine plus the two kinds of session editgraph uses: ``read()`` and ``write()``."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        parsed = make_url(url)
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        options: dict[str, Any] = {"json_serializer": canonical_json, "pool_pre_ping": True}
        if not self.is_sqlite:
            options.update(pool_size=pool_size, max_overflow=pool_size)
        self.engine: AsyncEngine = create_async_engine(url, **options)
        writer = self.engine
        if self.is_sqlite:
            _tune_sqlite(self.engine)
            # Writers take the write lock up front: a deferred BEGIN that upgrades later
            # fails at once with "database is locked" instead of waiting its turn.
            writer = self.engine.execution_options(sqlite_immediate=True)
        self._reader = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self._writer = async_sessionmaker(writer, class_=AsyncSession, expire_on_commit=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading; nothing it does is committed."""
        async with self._reader() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        if not self.is_sqlite:
            async with self._writer() as session, session.begin():
                yield session
            return
        # SQLite has one writer at a time, and a writer that finds the lock taken polls
        # with growing sleeps: a steady stream of short writes (a GC in batches) starves
        # it. Writers of this process take turns first, in order, without holding a
        # pooled connection while they wait; other processes still meet the busy timeout.
        async with _writer_turn(self.url), self._writer() as session, session.begin():
            yield session

    async def hold(self, session: AsyncSession, name: str) -> None:
        """Hold a lock named ``name`` until ``session``'s write transaction ends, against
        every other transaction that holds the same name: PostgreSQL's transaction-scoped
        advisory lock; on SQLite a write transaction already excludes every other writer."""
        if not self.is_sqlite:
            conn = await session.connection()
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"), {"name": name}
            )

    async def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


_TURNS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]]" = (
    weakref.WeakKeyDictionary()
)


def _writer_turn(url: str) -> asyncio.Lock:
    """The queue of this event loop's writers to one SQLite file (FIFO, as asyncio locks are)."""
    turns = _TURNS.setdefault(asyncio.get_running_loop(), {})
    return turns.setdefault(url, asyncio.Lock())


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below emit BEGIN, not the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

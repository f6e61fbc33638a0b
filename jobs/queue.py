"""The arq side of the job queue: msgpack, never pickle; ids decided by the caller."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import msgpack
from arq import ArqRedis
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from jobs.events import EventLog
from models import redis_keys
from models.states import RenderKind
from models.tables import Export, Render
from resolvers.errors import RateLimitedError

log = logging.getLogger(__name__)
serialize = partial(msgpack.packb, use_bin_type=True)
deserialize = partial(msgpack.unpackb, raw=False)
T = TypeVar("T")
# A request never waits longer than this on Redis for a rate-limit check or an enqueue.
QUICK_TIMEOUT_S = 0.5
# After Redis failed to answer, requests skip it this long (fail open), so a hung Redis
# costs one short wait every few seconds instead of one on every request.
SKIP_AFTER_FAILURE_S = 2.0


class RedisUnavailable(ConnectionError):
    """Redis did not answer in time (hung, stopped, unreachable); the database keeps the work."""


def connect(redis_url: str) -> ArqRedis:
    """An arq client using msgpack; it connects on first use, so a Redis that is down
    does not stop the server from starting (enqueues then fail, and the reconciler repairs)."""
    pool = ConnectionPool.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)
    return ArqRedis(pool, job_serializer=serialize, job_deserializer=deserialize)


# INCR the user's window and (re)set its expiry, atomically: the count so far.
_COUNT = "local n = redis.call('INCR', KEYS[1]) redis.call('EXPIRE', KEYS[1], ARGV[1]) return n"


class ArqQueue:
    """``resolvers.queue.JobQueue`` on arq, announcing queued renders to subscribers."""

    def __init__(
        self,
        pool: ArqRedis,
        *,
        keep: int = 1000,
        keep_s: int = 24 * 3600,
        limits: dict[RenderKind, int] | None = None,
        window_s: int = 60,
        timeout_s: float = QUICK_TIMEOUT_S,
    ) -> None:
        self.pool = pool
        self.events = EventLog(pool, keep=keep, keep_s=keep_s)
        # Renders of each kind a user may queue per window; counted in Redis, so the
        # limit holds across server processes.
        self.limits = limits or {}
        self.window_s = window_s
        self.timeout_s = timeout_s
        self._skip_until = 0.0

    async def _quick(self, call: Callable[[], Awaitable[T]]) -> T:
        """One Redis round trip within ``timeout_s``, or ``RedisUnavailable``."""
        if time.monotonic() < self._skip_until:
            raise RedisUnavailable("Redis did not answer a moment ago; not waiting on it now")
        try:
            # A cancelled redis-py command drops its connection, so no reply is left behind.
            async with asyncio.timeout(self.timeout_s):
                return await call()
        except (RedisError, OSError, TimeoutError) as exc:
            self._skip_until = time.monotonic() + SKIP_AFTER_FAILURE_S
            raise RedisUnavailable(f"Redis did not answer: {type(exc).__name__}") from exc

    async def enqueue(self, job_id: str, function: str, *args: Any) -> None:
        """Queue once under ``job_id``; arq ignores a second enqueue of a live id."""
        await self._quick(lambda: self.pool.enqueue_job(function, *args, _job_id=job_id))

    async def admit(self, *, user_id: int, kind: RenderKind) -> None:
        """Count one render against the user's window; over the limit, refuse it."""
        limit = self.limits.get(kind)
        if limit is None:
            return
        now = time.time()
        window = int(now // self.window_s)
        key = redis_keys.rate_window(kind, user_id, window)

        async def count() -> Any:
            # One script, not a pipeline: a pipeline cut off by the timeout keeps its
            # connection until it is collected.
            return await self.pool.eval(_COUNT, 1, key, str(self.window_s + 1))  # type: ignore[misc]  # redis-py types eval loosely

        try:
            counted = await self._quick(count)
        except RedisUnavailable as exc:
            # Redis is only the delivery: without it, edits still save (unlimited meanwhile),
            # and the reconciler queues their renders once Redis is back.
            log.warning("rate limit not checked: %s", exc)
            return
        if int(counted) > limit:
            retry_after = max(1, int((window + 1) * self.window_s - now) + 1)
            raise RateLimitedError(f"{kind} renders", limit, self.window_s, retry_after)

    async def announce(
        self,
        kind: str,
        render: Render,
        export: Export | None = None,
        segments: tuple[int, int] | None = None,
    ) -> None:
        """Tell subscribers what happened to a render, within the quick timeout."""
        await self._quick(lambda: self.events.publish(kind, render, export, segments))

    async def close(self) -> None:
        """Close the pool."""
        await self.pool.aclose(close_connection_pool=True)

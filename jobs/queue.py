"""The arq side of the job queue: msgpack, never pickle; ids decided by the caller."""

import logging
import time
from functools import partial
from typing import Any

import msgpack
from arq import ArqRedis
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from jobs.events import EventLog
from models.tables import Render
from resolvers.errors import RateLimitedError

log = logging.getLogger(__name__)
serialize = partial(msgpack.packb, use_bin_type=True)
deserialize = partial(msgpack.unpackb, raw=False)


def connect(redis_url: str) -> ArqRedis:
    """An arq client using msgpack; it connects on first use, so a Redis that is down
    does not stop the server from starting (enqueues then fail, and the reconciler repairs)."""
    pool = ConnectionPool.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)
    return ArqRedis(pool, job_serializer=serialize, job_deserializer=deserialize)


class ArqQueue:
    """``resolvers.queue.JobQueue`` on arq, announcing queued renders to subscribers."""

    def __init__(
        self,
        pool: ArqRedis,
        *,
        keep: int = 1000,
        keep_s: int = 24 * 3600,
        limits: dict[str, int] | None = None,
        window_s: int = 60,
    ) -> None:
        self.pool = pool
        self.events = EventLog(pool, keep=keep, keep_s=keep_s)
        # Renders of each kind a user may queue per window; counted in Redis, so the
        # limit holds across server processes.
        self.limits = limits or {}
        self.window_s = window_s

    async def enqueue(self, job_id: str, function: str, *args: Any) -> None:
        """Queue once under ``job_id``; arq ignores a second enqueue of a live id."""
        await self.pool.enqueue_job(function, *args, _job_id=job_id)

    async def admit(self, *, user_id: int, kind: str) -> None:
        """Count one render against the user's window; over the limit, refuse it."""
        limit = self.limits.get(kind)
        if limit is None:
            return
        now = time.time()
        window = int(now // self.window_s)
        key = f"editgraph:rate:{kind}:{user_id}:{window}"
        try:
            async with self.pool.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, self.window_s + 1)
                count, _ = await pipe.execute()
        except (RedisError, OSError):
            # Redis is only the delivery: without it, edits still save (unlimited meanwhile),
            # and the reconciler queues their renders once Redis is back.
            log.warning("rate limit not checked: Redis is unavailable")
            return
        if int(count) > limit:
            retry_after = max(1, int((window + 1) * self.window_s - now) + 1)
            raise RateLimitedError(f"{kind} renders", limit, self.window_s, retry_after)

    async def announce(self, render: Render) -> None:
        """Tell subscribers a render was queued."""
        await self.events.publish("queued", render)

    async def close(self) -> None:
        """Close the pool."""
        await self.pool.aclose(close_connection_pool=True)

"""The arq side of the job queue: msgpack, never pickle; ids decided by the caller."""

from functools import partial
from typing import Any

import msgpack
from arq import ArqRedis
from redis.asyncio import ConnectionPool

from jobs.events import EventLog
from models.tables import Render

serialize = partial(msgpack.packb, use_bin_type=True)
deserialize = partial(msgpack.unpackb, raw=False)


def connect(redis_url: str) -> ArqRedis:
    """An arq client using msgpack; it connects on first use, so a Redis that is down
    does not stop the server from starting (enqueues then fail, and the reconciler repairs)."""
    pool = ConnectionPool.from_url(redis_url, socket_connect_timeout=2, socket_timeout=10)
    return ArqRedis(pool, job_serializer=serialize, job_deserializer=deserialize)


class ArqQueue:
    """``resolvers.queue.JobQueue`` on arq, announcing queued renders to subscribers."""

    def __init__(self, pool: ArqRedis, *, keep: int = 1000, keep_s: int = 24 * 3600) -> None:
        self.pool = pool
        self.events = EventLog(pool, keep=keep, keep_s=keep_s)

    async def enqueue(self, job_id: str, function: str, *args: Any) -> None:
        """Queue once under ``job_id``; arq ignores a second enqueue of a live id."""
        await self.pool.enqueue_job(function, *args, _job_id=job_id)

    async def announce(self, render: Render) -> None:
        """Tell subscribers a render was queued."""
        await self.events.publish("queued", render)

    async def close(self) -> None:
        """Close the pool."""
        await self.pool.aclose(close_connection_pool=True)

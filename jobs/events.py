"""Publishing render events: one capped stream per project (replay) plus pub/sub (live)."""

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from models import redis_keys
from models.tables import Export, Render
from resolvers import events

# XADD and PUBLISH in one step, so a live event always has its place in the stream.
_PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[2])
redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', KEYS[2], id .. '|' .. ARGV[2])
return id
"""
CHANNEL_PATTERN = redis_keys.EVENTS_PATTERN
channel = redis_keys.events_channel
stream = redis_keys.events_stream


@dataclass(frozen=True)
class EventLog:
    """Publishes events; keeps at most ``keep`` per project, none older than ``keep_s``."""

    redis: Redis
    keep: int = 1000
    keep_s: int = 24 * 3600

    async def publish(
        self,
        kind: str,
        render: Render,
        export: Export | None = None,
        segments: tuple[int, int] | None = None,
    ) -> str:
        """Publish one event; returns its cursor."""
        body = events.encode(kind, render, export, segments)
        oldest = int((time.time() - self.keep_s) * 1000)
        cursor = await self.redis.eval(  # type: ignore[misc]  # redis-py types eval loosely
            _PUBLISH,
            2,
            stream(render.project_id),
            channel(render.project_id),
            str(self.keep),
            body,
            str(oldest),
            str(self.keep_s * 1000),
        )
        return cursor.decode() if isinstance(cursor, bytes) else str(cursor)

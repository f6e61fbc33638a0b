"""The event bus of one server process: ONE Redis subscription, fanned out to local feeds."""

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobs.events import CHANNEL_PATTERN, stream
from resolvers.events import RenderEvent, SubscriptionLimit, decode

log = logging.getLogger(__name__)


class Feed:
    """One subscriber's bounded buffer: progress may be dropped when it is full, never the end."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0
        self._items: collections.deque[RenderEvent] = collections.deque()
        self._ready = asyncio.Event()

    def put(self, event: RenderEvent) -> None:
        """Buffer an event without ever blocking the bus."""
        if len(self._items) >= self.limit:
            if not event.terminal:
                self.dropped += 1
                return
            # Make room for an ending by dropping the oldest progress, if there is one.
            for queued in self._items:
                if not queued.terminal:
                    self._items.remove(queued)
                    self.dropped += 1
                    break
        self._items.append(event)
        self._ready.set()

    def __aiter__(self) -> "Feed":
        return self

    async def __anext__(self) -> RenderEvent:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class EventBus:
    """Fans out every project's events to the feeds of this process; reconnects with backoff."""

    def __init__(self, redis: Redis, *, buffer: int = 100, per_user: int = 100) -> None:
        self.redis = redis
        self.buffer = buffer
        self.per_user = per_user
        self.feeds: dict[int, set[Feed]] = collections.defaultdict(set)
        self.per_user_count: collections.Counter[int] = collections.Counter()
        self.connected = asyncio.Event()
        self.connections = 0  # how many times the subscription was (re)established
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="editgraph-event-bus")

    async def stop(self) -> None:
        """Stop listening and drop the Redis subscription."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(CHANNEL_PATTERN)
                self.connections += 1
                self.connected.set()
                backoff = 0.1
                async for message in pubsub.listen():
                    self._dispatch(message)
            except (RedisError, OSError) as exc:
                self.connected.clear()
                log.warning("event bus lost Redis (%s); reconnecting in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated upstream

    def _dispatch(self, message: dict[str, object]) -> None:
        data = message.get("data")
        if not isinstance(data, bytes | str):
            return
        text = data.decode() if isinstance(data, bytes) else data
        cursor, _, body = text.partition("|")
        try:
            event = decode(cursor, body)
        except (ValueError, KeyError):
            log.warning("ignoring a malformed event: %.200s", text)
            return
        for feed in tuple(self.feeds.get(event.render.project_id, ())):
            feed.put(event)

    @asynccontextmanager
    async def listen(self, *, project_id: int, user_id: int) -> AsyncIterator[Feed]:
        """A feed of one project's live events; released however the block exits."""
        if self.per_user_count[user_id] >= self.per_user:
            raise SubscriptionLimit(f"at most {self.per_user} live subscriptions per user")
        feed = Feed(self.buffer)
        self.per_user_count[user_id] += 1
        self.feeds[project_id].add(feed)
        try:
            yield feed
        finally:
            self.feeds[project_id].discard(feed)
            if not self.feeds[project_id]:
                del self.feeds[project_id]
            self.per_user_count[user_id] -= 1
            if self.per_user_count[user_id] <= 0:
                del self.per_user_count[user_id]

    async def replay(self, *, project_id: int, after: str) -> list[RenderEvent]:
        """The retained events after ``after``, oldest first."""
        entries = await self.redis.xrange(stream(project_id), min=f"({after}", max="+")
        replayed = []
        for entry_id, fields in entries:
            cursor = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            replayed.append(decode(cursor, fields[b"e"]))
        return replayed

    @property
    def subscribers(self) -> int:
        """Live feeds in this process."""
        return sum(len(f) for f in self.feeds.values())

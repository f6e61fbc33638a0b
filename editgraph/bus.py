"""The event bus of one server process: ONE Redis subscription, fanned out to local feeds."""

import asyncio
import collections
import contextlib
import ctypes
import gc
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

from editgraph import metrics
from jobs.events import CHANNEL_PATTERN, stream
from models import redis_keys
from resolvers.events import RenderEvent, SubscriptionLimit, decode

log = logging.getLogger(__name__)


# Each seat (KEYS[i], ARGV[2+i]) written again with its new lapse, its key kept alive.
_RENEW = """
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[1], ARGV[2 + i])
  redis.call('EXPIRE', key, ARGV[2])
end
return #KEYS
"""


class Feed:
    """One subscriber's bounded buffer: progress may be dropped when it is full, never the end."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0
        self._items: collections.deque[RenderEvent] = collections.deque()
        self._ready = asyncio.Event()
        self._handed: RenderEvent | None = None  # sent once the subscriber asks for more

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
        if self._handed is not None:
            # The subscriber asks for the next event once it has sent the last one.
            metrics.observe_delivery(self._handed.cursor)
            self._handed = None
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        self._handed = self._items.popleft()
        return self._handed


def _malloc_trim() -> Callable[[], object]:
    """glibc's ``malloc_trim(0)``; a no-op where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # TypeError: no CDLL(None) on Windows
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class Reclaim:
    """Hands memory back to the OS once a burst of subscribers has left and gone quiet.

    Two things keep a closed connection's memory: graphql-core's execution context and
    asyncio's socket transport are reference cycles, freed only by a full collection, which
    an idle server may not run for hours; and glibc keeps freed heap pages. So, after at
    least ``burst`` releases and ``quiet_s`` without one (at most once every ``every_s``):
    a full ``gc.collect()``, then ``malloc_trim(0)``. That pauses the loop as the interpreter's
    own full collection of that garbage would (measured: ~0.15 s after 200 connections, ~0.35 s
    after 1,000). What pymalloc keeps (its arenas with a live object left) is reused, not grown.
    """

    def __init__(self, *, burst: int = 50, quiet_s: float = 1.0, every_s: float = 10.0) -> None:
        self.burst = burst
        self.quiet_s = quiet_s
        self.every_s = every_s
        self.released = 0  # subscribers released since the last run
        self.runs = 0
        self.due: float | None = None  # loop time of the scheduled run
        self._last = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._trim = _malloc_trim()

    def release(self) -> None:
        """Count one subscriber gone; (re)arm the run once a burst has left."""
        self.released += 1
        if self.released < self.burst:
            return
        # Each release restarts the quiet period: one run per burst, not one per close.
        self.cancel()
        loop = asyncio.get_running_loop()
        self.due = max(loop.time() + self.quiet_s, self._last + self.every_s)
        self._timer = loop.call_at(self.due, self.run)

    def run(self) -> None:
        """Collect reference cycles, then return free heap pages to the OS."""
        self._timer, self.due = None, None
        self._last = asyncio.get_running_loop().time()
        released, self.released = self.released, 0
        start = time.perf_counter()
        collected = gc.collect()
        self._trim()
        self.runs += 1
        log.info(
            "%d subscribers left: collected %d objects and trimmed the heap in %.0f ms",
            released,
            collected,
            (time.perf_counter() - start) * 1000,
        )

    def cancel(self) -> None:
        """Drop a scheduled run."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self.due = None, None


# A subscription counts against its user's cluster-wide limit for this long unless its
# server renews it (a server that dies stops counting within this time).
SEAT_S = 60.0
# Remove lapsed seats, count the rest, and take one if the limit allows: atomically.
_TAKE_SEAT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class Seats:
    """Each user's live subscriptions across every server, counted in Redis (one sorted
    set per user). If Redis does not answer, a server counts its own alone."""

    def __init__(self, redis: Redis, limit: int, *, seat_s: float = SEAT_S) -> None:
        self.redis = redis
        self.limit = limit
        self.seat_s = seat_s
        self.server = secrets.token_hex(8)
        self.held: dict[str, int] = {}  # member -> user
        self._renewer: asyncio.Task[None] | None = None

    async def take(self, user_id: int, local_count: int) -> str | None:
        """A seat for a new subscription (its member name), or None at the limit."""
        member = f"{self.server}:{secrets.token_hex(6)}"
        now = time.time()
        try:
            taken = await asyncio.wait_for(
                self.redis.eval(  # type: ignore[arg-type]  # redis-py types it sync-or-async
                    _TAKE_SEAT,
                    1,
                    redis_keys.subscribers(user_id),
                    str(now),
                    str(self.limit),
                    str(now + self.seat_s),
                    member,
                    str(int(self.seat_s * 2) + 1),
                ),
                timeout=1.0,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("subscription limit counted on this server only (%s)", exc)
            return member if local_count < self.limit else None
        if not taken:
            return None
        self.held[member] = user_id
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew(), name="editgraph-seats")
        return member

    async def give_back(self, member: str) -> None:
        """Free a seat (a lapsed one frees itself)."""
        user_id = self.held.pop(member, None)
        if user_id is None:
            return
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(
                self.redis.zrem(redis_keys.subscribers(user_id), member), timeout=1.0
            )

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.seat_s / 3)
            lapse = time.time() + self.seat_s
            try:
                await asyncio.wait_for(self._renew_all(lapse), timeout=self.seat_s / 3)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("subscription seats not renewed (%s)", exc)

    async def _renew_all(self, lapse: float) -> None:
        """Every seat held here, written again with its new lapse (a restarted Redis gets
        them back), and each user's key kept alive as long as its seats."""
        held = tuple(self.held.items())
        if not held:
            return
        # One script, not a pipeline: a pipeline cut off by the timeout keeps its
        # connection until it is collected.
        keys = [redis_keys.subscribers(user_id) for _, user_id in held]
        args = [str(lapse), str(int(self.seat_s * 2) + 1), *(member for member, _ in held)]
        await self.redis.eval(_RENEW, len(keys), *keys, *args)  # type: ignore[misc]  # redis-py types eval loosely

    async def stop(self) -> None:
        """Stop renewing (the seats lapse on their own if not given back)."""
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None


class EventBus:
    """Fans out every project's events to the feeds of this process; reconnects with backoff."""

    def __init__(
        self,
        redis: Redis,
        *,
        buffer: int = 100,
        per_user: int = 100,
        reclaim: Reclaim | None = None,
    ) -> None:
        self.redis = redis
        self.buffer = buffer
        self.per_user = per_user
        self.reclaim = reclaim or Reclaim()
        self.feeds: dict[int, set[Feed]] = collections.defaultdict(set)
        self.per_user_count: collections.Counter[int] = collections.Counter()
        self.seats = Seats(redis, per_user)
        self.connected = asyncio.Event()
        self.connections = 0  # how many times the subscription was (re)established
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start listening (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="editgraph-event-bus")

    async def stop(self) -> None:
        """Stop listening and drop the Redis subscription."""
        self.reclaim.cancel()
        await self.seats.stop()
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
        """A feed of one project's live events; released however the block exits. A user
        holds at most ``per_user`` of them across every server."""
        seat = await self.seats.take(user_id, self.per_user_count[user_id])
        if seat is None:
            raise SubscriptionLimit(f"at most {self.per_user} live subscriptions per user")
        feed = Feed(self.buffer)
        self.per_user_count[user_id] += 1
        self.feeds[project_id].add(feed)
        metrics.subscriptions.inc()
        try:
            yield feed
        finally:
            metrics.subscriptions.dec()
            self.feeds[project_id].discard(feed)
            if not self.feeds[project_id]:
                del self.feeds[project_id]
            self.per_user_count[user_id] -= 1
            if self.per_user_count[user_id] <= 0:
                del self.per_user_count[user_id]
            await self.seats.give_back(seat)
            self.reclaim.release()

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

"""A slow subscriber's buffer: bounded, progress may go, a render's end never does; and the
memory a burst of leaving subscribers held goes back once they have gone."""

import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from redis.asyncio import Redis

from editgraph.bus import EventBus, Feed, Reclaim
from models.states import RenderKind
from models.tables import Render
from resolvers.events import RenderEvent
from tests.helpers.polling import until


def event(n: int, kind: str) -> RenderEvent:
    render = Render(
        id=1,
        project_id=1,
        kind=RenderKind.PROXY,
        version=1,
        preset="proxy",
        content_key="k",
        job_id="proxy:1:1",
        created_at=datetime.now(UTC),
    )
    return RenderEvent(cursor=f"{n}-0", kind=kind, render=render)


async def test_a_full_buffer_drops_progress_but_keeps_the_end() -> None:
    feed = Feed(limit=100)
    for n in range(150):
        feed.put(event(n, "progress"))
    feed.put(event(150, "proxy_ready"))
    feed.put(event(151, "failed"))
    received = [await anext(feed) for _ in range(100)]
    assert [(e.cursor, e.kind) for e in received[-2:]] == [
        ("150-0", "proxy_ready"),
        ("151-0", "failed"),
    ]
    assert feed.dropped == 52
    # What is kept stays in order.
    cursors = [int(e.cursor.split("-")[0]) for e in received]
    assert cursors == sorted(cursors)


async def test_endings_are_kept_even_past_the_limit() -> None:
    feed = Feed(limit=2)
    for n in range(4):
        feed.put(event(n, "export_complete"))
    assert [(await anext(feed)).cursor for _ in range(4)] == ["0-0", "1-0", "2-0", "3-0"]
    assert feed.dropped == 0


class InACycle:
    """What a closed connection leaves: objects only a full collection frees."""

    def __init__(self) -> None:
        self.me = self


@contextmanager
def collector_off() -> Iterator[None]:
    """Only the bus may collect; the interpreter's own collector stays out of the way."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def runs(reclaim: Reclaim) -> int:
    return reclaim.runs


async def leave(bus: EventBus, subscribers: int) -> None:
    for _ in range(subscribers):
        async with bus.listen(project_id=1, user_id=1):
            pass


async def test_a_burst_of_subscribers_leaving_frees_what_they_left_behind() -> None:
    redis = Redis()
    bus = EventBus(redis, reclaim=Reclaim(burst=5, quiet_s=0.05, every_s=0))
    with collector_off():
        left_behind = weakref.ref(InACycle())
        await leave(bus, 4)
        # A few subscribers leaving is not worth a collection.
        assert bus.reclaim.due is None and left_behind() is not None
        await leave(bus, 1)
        await until(lambda: runs(bus.reclaim), within=10, what="a reclaim")
        assert left_behind() is None
        assert (bus.reclaim.runs, bus.reclaim.released) == (1, 0)
    await redis.aclose()


async def test_one_reclaim_per_burst_and_at_most_one_per_interval() -> None:
    redis = Redis()
    reclaim = Reclaim(burst=2, quiet_s=0.05, every_s=60)
    bus = EventBus(redis, reclaim=reclaim)
    await leave(bus, 2)
    first = reclaim.due
    assert first is not None
    await leave(bus, 3)
    # Still leaving: the quiet period starts again, and the burst gets one run.
    assert reclaim.due is not None and reclaim.due > first
    await until(lambda: runs(reclaim), within=10, what="a reclaim")
    # The next burst waits a minute from that run (which came after ``first``).
    await leave(bus, 2)
    assert reclaim.runs == 1 and reclaim.due is not None and reclaim.due >= first + 60
    await bus.stop()
    assert reclaim.due is None
    await redis.aclose()

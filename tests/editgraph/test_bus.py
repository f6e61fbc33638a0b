"""A slow subscriber's buffer: bounded, progress may go, a render's end never does."""

from datetime import UTC, datetime

from editgraph.bus import Feed
from models.tables import Render
from resolvers.events import RenderEvent


def event(n: int, kind: str) -> RenderEvent:
    render = Render(
        id=1,
        project_id=1,
        kind="proxy",
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

"""Render events: what subscribers receive, and the one wire format workers publish in."""

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from models.tables import Export, Render
from resolvers.errors import DomainError

KINDS = (
    "queued",
    "progress",
    "proxy_playable",
    "proxy_ready",
    "export_complete",
    "failed",
    "cancelled",
)
T = TypeVar("T")
# Never dropped for a slow subscriber; progress events may be.
TERMINAL = frozenset({"proxy_ready", "export_complete", "failed", "cancelled"})


@dataclass(frozen=True)
class RenderEvent:
    """One thing that happened to a render; ``cursor`` orders a project's events."""

    cursor: str
    kind: str
    render: Render
    export: Export | None = None
    # (done, total) segments of a segmented proxy, at the time of the event
    segments: tuple[int, int] | None = None
    # What subscribers derive from this event, made once for all of them (see ``once``).
    derived: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def once(self, key: str, make: Callable[[], T]) -> T:
        """``make()``, computed by the first subscriber that asks and shared with the
        others: one server delivers this very object to every local subscriber of the
        project, so they also share what is executed and encoded from it."""
        if key not in self.derived:
            self.derived[key] = make()
        value: T = self.derived[key]
        return value

    @property
    def terminal(self) -> bool:
        """Whether the render is finished (for good or bad) with this event."""
        return self.kind in TERMINAL


def encode(
    kind: str,
    render: Render,
    export: Export | None = None,
    segments: tuple[int, int] | None = None,
) -> str:
    """The JSON body of an event, as workers and servers publish it."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    return json.dumps(
        {
            "kind": kind,
            "render": render.model_dump(mode="json"),
            "export": export.model_dump(mode="json") if export else None,
            "segments": list(segments) if segments else None,
        }
    )


def decode(cursor: str, body: str | bytes) -> RenderEvent:
    """An event from its cursor and JSON body."""
    data: dict[str, Any] = json.loads(body)
    export = data.get("export")
    segments = data.get("segments")
    return RenderEvent(
        cursor=cursor,
        kind=data["kind"],
        render=Render.model_validate(data["render"]),
        export=Export.model_validate(export) if export else None,
        segments=(int(segments[0]), int(segments[1])) if segments else None,
    )


def cursor_order(cursor: str) -> tuple[int, int]:
    """Sort key of a cursor (a Redis stream id, ``<ms>-<seq>``)."""
    ms, _, seq = cursor.partition("-")
    return int(ms), int(seq or 0)


# Redis stream ids are two unsigned 64-bit numbers; the very last id has no successor.
_MAX_ID_PART = 2**64 - 1


def valid_cursor(cursor: str) -> bool:
    """Whether a string is a cursor this API hands out (one Redis accepts to resume after)."""
    ms, _, seq = cursor.partition("-")
    parts = (ms, seq)
    # Checked before int(): ASCII digits only, at most 20 of them (2**64 has 20).
    if not all(p.isascii() and p.isdigit() and len(p) <= 20 for p in parts):
        return False
    numbers = (int(ms), int(seq))
    return max(numbers) <= _MAX_ID_PART and numbers != (_MAX_ID_PART, _MAX_ID_PART)


class SubscriptionLimit(DomainError):
    """A user is at their limit of live subscriptions."""

    code = "RATE_LIMITED"


class EventSource(Protocol):
    """Where subscriptions get events: live ones, and a replay of recent ones."""

    def listen(
        self, *, project_id: int, user_id: int
    ) -> AbstractAsyncContextManager[AsyncIterator[RenderEvent]]:
        """Live events of one project, from now on, until the block exits."""

    async def replay(self, *, project_id: int, after: str) -> list[RenderEvent]:
        """The project's retained events after ``after``, oldest first."""

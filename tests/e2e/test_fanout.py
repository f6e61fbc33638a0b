"""Fan-out: one event, many subscribers. Every subscriber gets every event, in order, in
the shape it asked for; subscribers that asked the same thing share one execution."""

import asyncio
import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from unittest.mock import patch

from sqlmodel import col, select
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from websockets.asyncio.client import ClientConnection

from editgraph.settings import Settings
from jobs.events import EventLog
from jobs.queue import connect
from models.db import Database
from models.tables import Render
from resolvers import ids
from tests.helpers.api import Api, new_project
from tests.helpers.websocket import raw_socket

SHORT = "subscription($p: ID!) { renderEvents(projectId: $p) { __typename cursor render { progress } } }"
LONG = """subscription($p: ID!) { renderEvents(projectId: $p) {
  cursor render { id kind version status progress } } }"""
PER_KIND = {SHORT: 12, LONG: 6}
EVENTS = 15


async def subscribe(ws: ClientConnection, document: str, pid: str) -> None:
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
    request = {"query": document, "variables": {"p": pid}}
    await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": request}))


async def next_event(ws: ClientConnection) -> dict[str, Any]:
    message = json.loads(await asyncio.wait_for(ws.recv(), 20))
    assert message["type"] == "next", message
    event: dict[str, Any] = message["payload"]["data"]["renderEvents"]
    return event


async def test_every_subscriber_gets_every_event_in_order_and_each_shape_runs_once(
    live: tuple[Api, str],
    tokens: dict[str, str],
    media: dict[str, Path],
    db: Database,
    settings: Settings,
) -> None:
    api, base = live
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    async with db.read() as session:
        render = (
            await session.exec(
                select(Render).where(col(Render.project_id) == ids.decode(pid, "Project"))
            )
        ).one()
    assert settings.redis_url is not None  # the live server's Redis
    redis = connect(settings.redis_url)
    publish = EventLog(redis).publish
    async with AsyncExitStack() as stack:
        stack.push_async_callback(redis.aclose, close_connection_pool=True)
        sockets: list[tuple[str, ClientConnection]] = []
        for document, count in PER_KIND.items():
            for _ in range(count):
                ws = await stack.enter_async_context(
                    raw_socket(base, {"authorization": f"Bearer {alice}"})
                )
                await subscribe(ws, document, pid)
                sockets.append((document, ws))
        # A subscription is live once it has received an event: mark until all have.
        inboxes = [asyncio.Queue[dict[str, Any]]() for _ in sockets]

        async def read(ws: ClientConnection, inbox: asyncio.Queue[dict[str, Any]]) -> None:
            while True:
                inbox.put_nowait(await next_event(ws))

        readers = [
            asyncio.create_task(read(ws, inbox))
            for (_, ws), inbox in zip(sockets, inboxes, strict=True)
        ]
        stack.callback(lambda: [r.cancel() for r in readers])
        render.progress = 0.001
        while any(inbox.empty() for inbox in inboxes):
            await publish("progress", render)
            await asyncio.sleep(0.3)
        await asyncio.sleep(0.5)
        for inbox in inboxes:
            while not inbox.empty():
                assert inbox.get_nowait()["render"]["progress"] == 0.001

        original = StrawberryGraphQLCoreExecutionContext.execute_operation
        with patch.object(
            StrawberryGraphQLCoreExecutionContext,
            "execute_operation",
            autospec=True,
            side_effect=original,
        ) as executed:
            sent = []
            for n in range(1, EVENTS + 1):
                render.progress = n / 100
                sent.append(render.progress)
                await publish("progress", render)

            async def receive(inbox: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
                return [await asyncio.wait_for(inbox.get(), 20) for _ in range(EVENTS)]

            received = await asyncio.gather(*(receive(inbox) for inbox in inboxes))
        # Two shapes of subscription: each event executed once per shape, not per subscriber.
        assert executed.call_count == EVENTS * len(PER_KIND)

    for (document, _), events in zip(sockets, received, strict=True):
        assert [e["render"]["progress"] for e in events] == sent
        cursors = [tuple(map(int, e["cursor"].split("-"))) for e in events]
        assert cursors == sorted(cursors) and len(set(cursors)) == EVENTS
        if document == SHORT:
            assert all(set(e) == {"__typename", "cursor", "render"} for e in events)
            assert all(set(e["render"]) == {"progress"} for e in events)
        else:
            assert all(set(e) == {"cursor", "render"} for e in events)
            assert all(
                e["render"]["kind"] == "PROXY" and e["render"]["version"] == 0 for e in events
            )
    # Every subscriber of a shape received the same bytes' worth of answer.
    by_shape: dict[str, list[list[dict[str, Any]]]] = {}
    for (document, _), events in zip(sockets, received, strict=True):
        by_shape.setdefault(document, []).append(events)
    assert all(all(e == same[0] for e in same) for same in by_shape.values())

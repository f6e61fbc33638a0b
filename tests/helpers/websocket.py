"""Bare graphql-transport-ws clients over real websockets, for what gql's client hides:
close codes, the first answer to one operation, an Origin header."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

PROTOCOL = Subprotocol("graphql-transport-ws")


def ws_url(base: str) -> str:
    """The websocket address of a server's /graphql, from its http:// base."""
    return base.replace("http://", "ws://") + "/graphql"


@asynccontextmanager
async def raw_socket(
    base: str, payload: dict[str, Any], *, origin: str | None = None
) -> AsyncIterator[ClientConnection]:
    """A graphql-transport-ws connection that has sent its ``connection_init``."""
    async with connect(
        ws_url(base),
        subprotocols=[PROTOCOL],
        origin=Origin(origin) if origin else None,
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        yield ws


async def first_answer(base: str, token: str, document: str, variables: dict[str, Any]) -> Any:
    """The first message the server sends for one operation, after the ack."""
    async with raw_socket(base, {"authorization": f"Bearer {token}"}) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
        request = {"query": document, "variables": variables}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": request}))
        return json.loads(await asyncio.wait_for(ws.recv(), 10))

"""Render events, published through Redis for the subscriptions (channel and capped stream)."""

import json
from typing import Any

from redis.asyncio import Redis

from models.tables import Render

STREAM_MAXLEN = 1000


def channel(project_id: int) -> str:
    """The pub/sub channel of one project's events."""
    return f"editgraph:events:{project_id}"


def stream(project_id: int) -> str:
    """The capped stream that keeps one project's recent events for replay."""
    return f"editgraph:stream:{project_id}"


async def publish(redis: Redis, render: Render, event: str, **extra: Any) -> None:
    """Publish ``event`` (queued, progress, proxy_ready, export_complete, failed, cancelled)."""
    payload = json.dumps(
        {
            "event": event,
            "renderId": render.id,
            "projectId": render.project_id,
            "kind": render.kind,
            "version": render.version,
            "status": render.status,
            "progress": render.progress,
            **extra,
        }
    )
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xadd(stream(render.project_id), {"e": payload}, maxlen=STREAM_MAXLEN, approximate=True)
        pipe.publish(channel(render.project_id), payload)
        await pipe.execute()

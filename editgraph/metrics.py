"""Prometheus metrics: /metrics on the API port (an admin's bearer token), and, with
``EDITGRAPH_METRICS_ADDR``, the same figures without auth on a listener of their own for
scrapers on a private network. Each process counts what it does (see resolvers/telemetry.py
for renders and uploads); what the database holds (the render queue, GC totals, storage)
is read at scrape time, so every server reports the same cluster-wide figures."""

import asyncio
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlmodel import col
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from editgraph.auth import authenticate
from models.db import Database
from models.states import GcRunStatus, RenderKind, RenderStatus
from models.store import MediaStore
from models.tables import GcRun, Render
from resolvers import gc_policy
from schema.observe import OTHER, Operation

log = logging.getLogger(__name__)
_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Distinct operation names kept as labels; a client inventing names past this is "other".
MAX_OPERATION_NAMES = 200

websocket_connections = Gauge(
    "editgraph_websocket_connections", "Open GraphQL websocket connections in this process"
)
subscriptions = Gauge("editgraph_subscriptions", "Live subscriptions (event feeds) in this process")
event_delivery = Histogram(
    "editgraph_event_delivery_seconds",
    "From an event's publication to its sending to a subscriber",
    buckets=_FAST,
)
operation_duration = Histogram(
    "editgraph_graphql_operation_duration_seconds",
    "GraphQL operations, by operation name, type and outcome (ok or an error code)",
    ["operation", "type", "outcome"],
    buckets=_FAST,
)
_names: set[str] = set()
_names_lock = threading.Lock()


def observe_operation(done: Operation) -> None:
    """Count one GraphQL operation (the schema's observer)."""
    name = done.name
    with _names_lock:
        if name not in _names:
            if len(_names) >= MAX_OPERATION_NAMES:
                name = OTHER
            else:
                _names.add(name)
    operation_duration.labels(name, done.type, done.outcome).observe(done.seconds)


def observe_delivery(cursor: str) -> None:
    """An event was sent: its cursor is the stream id Redis gave it, in milliseconds."""
    head = cursor.partition("-")[0]
    if head.isdigit():
        event_delivery.observe(max(time.time() - int(head) / 1000, 0.0))


@dataclass
class Figures:
    """What the database and the media store say, as of the last refresh."""

    renders: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, status) → n
    gc: dict[str, int] = field(default_factory=dict)
    last_cycle: float | None = None
    storage: dict[str, tuple[int, int]] = field(default_factory=dict)
    storage_at: float = float("-inf")


class Cluster(Collector):
    """The figures every server reads from the database and the store, refreshed by
    ``refresh`` (at each scrape of /metrics, and every few seconds for the listener)."""

    def __init__(self, db: Database, store: MediaStore, storage_every_s: float) -> None:
        self.db = db
        self.store = store
        self.storage_every_s = storage_every_s
        self.figures = Figures()
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Read the queue and the GC totals; the store's usage at most every few seconds
        (listing a large store is slow)."""
        async with self._lock:
            figures = Figures(storage=self.figures.storage, storage_at=self.figures.storage_at)
            async with self.db.read() as session:
                connection = await session.connection()  # plain rows: aggregates
                rows = await connection.execute(
                    select(col(Render.kind), col(Render.status), func.count())
                    .where(col(Render.status).in_((RenderStatus.QUEUED, RenderStatus.RUNNING)))
                    .group_by(col(Render.kind), col(Render.status))
                )
                for kind, status, count in rows.all():
                    figures.renders[(str(kind), str(status))] = int(count)
                totals = (
                    await connection.execute(
                        select(
                            func.coalesce(func.sum(GcRun.marked), 0),
                            func.coalesce(func.sum(GcRun.archived), 0),
                            func.coalesce(func.sum(GcRun.deleted), 0),
                            func.coalesce(func.sum(GcRun.proxies_reclaimed), 0),
                            func.coalesce(func.sum(GcRun.bytes_marked), 0),
                            func.coalesce(func.sum(GcRun.bytes_moved), 0),
                            func.coalesce(func.sum(GcRun.bytes_freed), 0),
                        )
                    )
                ).one()
                names = ("marked", "archived", "deleted", "proxies_reclaimed")
                figures.gc = dict(zip(names, (int(v) for v in totals[:4]), strict=True))
                byte_names = ("bytes_marked", "bytes_moved", "bytes_freed")
                figures.gc |= dict(zip(byte_names, (int(v) for v in totals[4:]), strict=True))
                last = (
                    await connection.execute(
                        select(func.max(GcRun.finished_at)).where(
                            col(GcRun.status) == GcRunStatus.DONE
                        )
                    )
                ).scalar_one_or_none()
                figures.last_cycle = last.timestamp() if last is not None else None
            now = time.monotonic()
            if now - figures.storage_at >= self.storage_every_s:
                figures.storage = await asyncio.to_thread(gc_policy.storage_usage, self.store)
                figures.storage_at = now
            self.figures = figures

    def collect(self) -> Iterator[Metric]:
        """The last refresh's figures, in Prometheus' families."""
        figures = self.figures
        queued = GaugeMetricFamily(
            "editgraph_render_queue_depth", "Renders waiting for a worker", labels=["kind"]
        )
        running = GaugeMetricFamily(
            "editgraph_renders_in_progress", "Renders a worker is running", labels=["kind"]
        )
        for kind in RenderKind:
            queued.add_metric([kind.value], figures.renders.get((kind, RenderStatus.QUEUED), 0))
            running.add_metric([kind.value], figures.renders.get((kind, RenderStatus.RUNNING), 0))
        yield queued
        yield running
        exports = CounterMetricFamily(
            "editgraph_gc_exports", "Exports the GC changed, by action", labels=["action"]
        )
        for action in ("marked", "archived", "deleted"):
            exports.add_metric([action], figures.gc.get(action, 0))
        yield exports
        reclaimed = CounterMetricFamily(
            "editgraph_gc_proxies_reclaimed", "Stale proxies the GC deleted"
        )
        reclaimed.add_metric([], figures.gc.get("proxies_reclaimed", 0))
        yield reclaimed
        size = CounterMetricFamily(
            "editgraph_gc_bytes",
            "Bytes the GC marked, moved to the archive and freed",
            labels=["action"],
        )
        for action in ("marked", "moved", "freed"):
            size.add_metric([action], figures.gc.get(f"bytes_{action}", 0))
        yield size
        if figures.last_cycle is not None:
            last = GaugeMetricFamily(
                "editgraph_gc_last_run_timestamp_seconds", "When the last GC run finished"
            )
            last.add_metric([], figures.last_cycle)
            yield last
        stored = GaugeMetricFamily(
            "editgraph_storage_bytes", "Bytes in the media store, by area", labels=["area"]
        )
        objects = GaugeMetricFamily(
            "editgraph_storage_objects", "Files in the media store, by area", labels=["area"]
        )
        for area, (size_bytes, count) in sorted(figures.storage.items()):
            stored.add_metric([area], size_bytes)
            objects.add_metric([area], count)
        yield stored
        yield objects


class _Everything(Collector):
    """This process's own series and the cluster's figures, as one scrape."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from self.cluster.collect()


def exposition(cluster: Cluster) -> bytes:
    """Every series, in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Everything(cluster))
    return generate_latest(registry)


async def scrape(
    request: Request, cluster: Cluster, db: Database, *, token_ttl_days: int | None
) -> Response:
    """GET /metrics on the API port: an admin's bearer token, like the admin fields."""
    actor = await authenticate(
        db, request.headers.get("authorization"), token_ttl_days=token_ttl_days
    )
    if actor is None:
        return PlainTextResponse(
            "an admin's bearer token is required",
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not actor.is_admin:
        return PlainTextResponse("metrics are for admins", status_code=403)
    try:
        await cluster.refresh()
    except Exception as exc:  # the scraper should see "down", not a bug
        log.warning("metrics: the database or the store did not answer: %s", exc)
        return PlainTextResponse("the database or the media store did not answer", 503)
    return Response(exposition(cluster), media_type=CONTENT_TYPE_LATEST)


def parse_addr(addr: str, offset: int = 0) -> tuple[str, int]:
    """``host:port`` (or ``:port``, all interfaces) as a (host, port) pair; ``offset`` is
    added to the port (the Nth server process listens on port + N)."""
    match = re.fullmatch(r"(.*):([0-9]{1,5})", addr.strip())
    if match is None:
        raise ValueError(f"{addr!r} is not host:port")
    host = match.group(1).strip("[]") or "0.0.0.0"  # noqa: S104 (":port" asks for every interface)
    return host, int(match.group(2)) + offset


class Listener:
    """The metrics listener of ``EDITGRAPH_METRICS_ADDR``: no auth, so a private address."""

    def __init__(self, addr: str, collector: Collector | None = None) -> None:
        host, port = parse_addr(addr)
        registry: Any = REGISTRY
        if collector is not None:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(collector)
        self.server, self.thread = start_http_server(port, host, registry)
        self.port = self.server.server_port
        log.info("metrics on http://%s:%s/metrics", host, self.port)

    def stop(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


async def keep_fresh(cluster: Cluster, every_s: float) -> None:
    """Refresh the cluster figures for the listener, whose scrapes cannot wait on the
    database (it answers from a thread)."""
    while True:
        try:
            await cluster.refresh()
        except Exception as exc:  # a scrape shows the last figures; the next round retries
            log.warning("metrics not refreshed: %s", exc)
        await asyncio.sleep(every_s)


def listen_with_cluster(addr: str, cluster: Cluster) -> Listener:
    """The listener of a server process: its own series and the cluster's figures."""
    return Listener(addr, _Everything(cluster))

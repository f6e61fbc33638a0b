"""The Starlette application: /graphql, /media, /healthz, and the lifecycle of its connections."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from editgraph import admin_console, graphiql, metrics
from editgraph.bus import EventBus
from editgraph.graphql_view import AppState, EditgraphGraphQL, Services, services_of
from editgraph.hls import hls_endpoint
from editgraph.logs import RequestIds
from editgraph.media import MediaSigner, media_endpoint
from editgraph.metrics import Cluster
from editgraph.settings import Settings
from jobs.queue import ArqQueue, connect
from models.db import Database
from models.states import RenderKind
from schema.context import Background


def create_app(settings: Settings, *, db: Database | None = None) -> Starlette:
    """Build the app. ``settings.redis_url`` must be set (serve starts an embedded one).

    The queue, the event bus and the database are connected by the app's lifespan, which
    yields them as its state (``AppState``): each request reads them from there."""
    if settings.redis_url is None:
        raise ValueError("create_app needs a Redis URL; `editgraph serve` provides one")
    redis_url = settings.redis_url
    store = settings.store()
    store.ensure_layout()
    signer = MediaSigner(settings.secret_key, settings.media_url_ttl_s, settings.public_url or "")
    graphql = EditgraphGraphQL(settings)

    async def healthz(request: Request) -> JSONResponse:
        services = services_of(request)
        checks: dict[str, str] = {}
        for name, ping in (("database", services.db.ping), ("redis", services.ping_redis)):
            try:
                await ping()
                checks[name] = "ok"
            except Exception as exc:  # any failure means "not healthy"; say which and why
                checks[name] = f"error: {type(exc).__name__}"
        healthy = all(v == "ok" for v in checks.values())
        body: dict[str, object] = {"status": "ok" if healthy else "unavailable", **checks}
        free = store.free_bytes()
        if free < settings.min_free_bytes:
            # A warning, not a 503: playback and edits still work, and every server on this
            # media root would otherwise leave the load balancer at once.
            body.update(disk="low", disk_free_bytes=free)
            body["status"] = "degraded" if healthy else body["status"]
        return JSONResponse(body, status_code=200 if healthy else 503)

    async def scrape(request: Request) -> Response:
        services = services_of(request)
        return await metrics.scrape(
            request, services.cluster, services.db, token_ttl_days=settings.token_ttl_days
        )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[AppState]:
        # Each step is undone at shutdown, in reverse order, also when a later one fails.
        async with AsyncExitStack() as stack:
            database = db
            if database is None:
                database = Database(settings.database_url)
                stack.push_async_callback(database.dispose)
            queue = ArqQueue(
                connect(redis_url),
                keep=settings.events_keep,
                keep_s=settings.events_keep_s,
                limits={
                    RenderKind.EXPORT: settings.rate_exports,
                    RenderKind.PROXY: settings.rate_proxies,
                },
                window_s=settings.rate_window_s,
            )
            stack.push_async_callback(queue.close)
            # Its own client: a subscription waits on its socket indefinitely, with no timeout.
            listener = Redis.from_url(redis_url, socket_connect_timeout=2, health_check_interval=15)
            stack.push_async_callback(listener.aclose)
            bus = EventBus(
                listener,
                buffer=settings.subscriber_buffer,
                per_user=settings.subscriptions_per_user,
            )
            bus.start()
            stack.push_async_callback(bus.stop)
            background = Background()
            stack.push_async_callback(background.stop)
            cluster = Cluster(database, store, settings.metrics_storage_every_s)
            if settings.metrics_addr:
                listener = metrics.listen_with_cluster(settings.metrics_addr, cluster)
                stack.callback(listener.stop)
                fresh = asyncio.create_task(metrics.keep_fresh(cluster, settings.metrics_refresh_s))
                stack.push_async_callback(_cancelled, fresh)
            yield {
                "services": Services(
                    settings=settings,
                    db=database,
                    store=store,
                    signer=signer,
                    queue=queue,
                    bus=bus,
                    background=background,
                    cluster=cluster,
                )
            }

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route(
                "/media/hls/{render_id:int}/{name:path}",
                hls_endpoint(signer, store),
                methods=["GET", "HEAD"],
            ),
            Route("/media/{key:path}", media_endpoint(signer, store), methods=["GET", "HEAD"]),
            Route("/metrics", scrape, methods=["GET"]),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            # GraphiQL's scripts and styles, served here: the page loads nothing from elsewhere.
            *([graphiql.route()] if settings.graphiql_enabled else []),
            # The admin console: a page and its own script and style; the API checks rights.
            *admin_console.routes(),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(settings.origin_policy().middleware)
    app.add_middleware(RequestIds)  # outermost: even a refused preflight has an id
    return app


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

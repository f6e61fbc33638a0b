"""Strawberry's ASGI view, with our context, auth and streamed multipart uploads."""

from dataclasses import dataclass
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException, StarletteRequestAdapter
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.file_uploads.utils import replace_placeholders_with_files
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult
from strawberry.types.unset import UnsetType

from editgraph import multipart
from editgraph.auth import authenticate
from editgraph.media import MediaSigner
from editgraph.settings import Settings
from jobs.bus import EventBus
from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from schema.context import Context
from schema.limits import QueryLimits, classify
from schema.root import build_schema

# GraphiQL sends the Headers tab with HTTP requests only. This fetcher also passes its
# Authorization header as the websocket connection_init payload, so subscriptions work.
_STOCK_FETCHER = """      const fetcher = GraphiQL.createFetcher({
        url: fetchURL,
        headers: defaultHeaders,
        subscriptionUrl,
      });"""
_FETCHER = """      const fetcher = (graphQLParams, opts) => {
        const headers = Object.assign({}, defaultHeaders, (opts && opts.headers) || {});
        const auth = headers.Authorization || headers.authorization;
        return GraphiQL.createFetcher({
          url: fetchURL,
          headers: defaultHeaders,
          subscriptionUrl,
          wsConnectionParams: auth ? { authorization: auth } : {},
        })(graphQLParams, opts);
      };"""


def graphiql_with_connection_params(html: str) -> str:
    """Strawberry's GraphiQL page, with subscriptions authenticated from the Headers tab."""
    if _STOCK_FETCHER not in html:
        raise RuntimeError("Strawberry's GraphiQL page changed; update editgraph's fetcher patch")
    return html.replace(_STOCK_FETCHER, _FETCHER)


class _RequestAdapter(StarletteRequestAdapter):
    """Keeps the Starlette request within reach, so uploads can stream from it."""

    def __init__(self, request: Request) -> None:
        super().__init__(request)
        self.starlette_request = request


@dataclass
class Services:
    """The long-lived things every request shares; the queue connects at start-up."""

    settings: Settings
    db: Database
    store: MediaStore
    signer: MediaSigner
    queue: ArqQueue | None = None
    bus: EventBus | None = None

    async def ping_redis(self) -> None:
        """Raise unless Redis answers."""
        if self.queue is None:
            raise ConnectionError("the job queue is not connected")
        await self.queue.pool.ping()


class EditgraphGraphQL(GraphQL[Context, None]):
    """The /graphql endpoint: HTTP, graphql-transport-ws and GraphiQL in development."""

    request_adapter_class = _RequestAdapter

    def __init__(self, services: Services) -> None:
        settings = services.settings
        limits = QueryLimits(
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_query_aliases,
            max_tokens=settings.max_query_tokens,
        )
        super().__init__(
            build_schema(
                limits,
                production=settings.env == "production",
                max_batch=settings.max_batch_operations,
            ),
            graphql_ide="graphiql" if settings.graphiql_enabled else None,
            multipart_uploads_enabled=True,
            allow_queries_via_get=False,
            max_subscriptions_per_connection=settings.subscriptions_per_connection,
            allowed_origins=settings.allowed_origins,
        )
        self.services = services
        self.export_preset = services.settings.worker_config().export
        self._ide_html = graphiql_with_connection_params(super().graphql_ide_html)

    @property
    def graphql_ide_html(self) -> str:
        """The GraphiQL page served at /graphql in development."""
        return self._ide_html

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        services = self.services
        assert services.queue is not None and services.bus is not None, "set up by the lifespan"
        websocket = isinstance(request, WebSocket)
        # Websockets authenticate with their connection_init payload (on_ws_connect).
        actor = (
            None
            if websocket
            else await authenticate(services.db, request.headers.get("authorization"))
        )
        return Context(
            db=services.db,
            store=services.store,
            queue=services.queue,
            events=services.bus,
            export_preset=self.export_preset,
            media_url=services.signer.url,
            caller=actor,
            long_lived=websocket,
        )

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        """Every error leaves with its code (and, in production, without suggestions)."""
        production = self.services.settings.env == "production"
        for error in result.errors or []:
            classify(error, production=production)
        return await super().process_result(request, result)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Accept a websocket only with a valid token in its connection_init payload."""
        value = context.connection_params.get("authorization")
        actor = await authenticate(self.services.db, value if isinstance(value, str) else None)
        if actor is None:
            raise ConnectionRejectionError({"message": "a valid bearer token is required"})
        context.sign_in(actor)
        return None

    async def parse_multipart(self, request: AsyncHTTPRequestAdapter) -> dict[str, Any]:
        assert isinstance(request, _RequestAdapter)
        starlette_request = request.starlette_request
        # Nobody streams gigabytes to disk without a valid token.
        if (
            await authenticate(self.services.db, starlette_request.headers.get("authorization"))
            is None
        ):
            raise HTTPException(401, "sign in: send 'Authorization: Bearer <token>'")
        try:
            parsed = await multipart.parse(
                starlette_request,
                self.services.store,
                max_file_bytes=self.services.settings.max_upload_bytes,
            )
        except multipart.MultipartError as exc:
            raise HTTPException(exc.status, exc.message) from exc
        starlette_request.state.uploads = parsed
        operations = parsed.fields.get("operations")
        files_map = parsed.fields.get("map")
        if not isinstance(operations, dict) or not isinstance(files_map, dict):
            parsed.discard()
            raise HTTPException(400, "a multipart request needs JSON 'operations' and 'map' fields")
        try:
            return replace_placeholders_with_files(operations, files_map, parsed.files)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            parsed.discard()
            raise HTTPException(
                400, "the multipart 'map' names files or paths that are missing"
            ) from exc

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        try:
            response = await self.run(request)
        except HTTPException as exc:
            if exc.reason == "Too many operations":
                limit = self.services.settings.max_batch_operations
                response = JSONResponse(
                    {
                        "errors": [
                            {
                                "message": f"at most {limit} operations per request",
                                "extensions": {"code": "QUERY_TOO_COMPLEX"},
                            }
                        ]
                    },
                    status_code=400,
                )
            else:
                response = PlainTextResponse(exc.reason, status_code=exc.status_code)
        finally:
            # Whatever the resolvers did not adopt is removed when the request ends.
            uploads = getattr(request.state, "uploads", None)
            if isinstance(uploads, multipart.ParsedMultipart):
                uploads.discard()
        await response(scope, receive, send)

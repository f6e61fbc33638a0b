"""Strawberry's ASGI view, with our context, auth and streamed multipart uploads."""

import asyncio
import json
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypedDict, cast

from cross_web import AsyncHTTPRequestAdapter, HTTPException, StarletteRequestAdapter
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.file_uploads.utils import replace_placeholders_with_files
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.types.unset import UnsetType

from editgraph import auth, graphiql, graphql_http, metrics, multipart
from editgraph.auth import authenticate
from editgraph.bus import EventBus
from editgraph.media import MediaSigner
from editgraph.metrics import Cluster
from editgraph.settings import Settings
from jobs.queue import ArqQueue
from models import keys
from models.db import Database
from models.store import MediaStore
from resolvers import users
from resolvers.errors import DomainError, QueryTooComplexError, UnauthenticatedError
from resolvers.users import Actor
from schema.context import Background, Context
from schema.errors import graphql_error
from schema.execution import SharedData
from schema.limits import QueryLimits
from schema.root import build_schema

# Strawberry's answer to a POST whose body is neither JSON nor multipart; editgraph's is 415.
UNSUPPORTED_CONTENT_TYPE = "Unsupported content type"


class BodyTooLarge(Exception):
    """A JSON request body went over ``EDITGRAPH_MAX_JSON_BYTES`` while it streamed in."""


class Unauthenticated(Exception):
    """An upload without a valid token, refused before its body is read."""

    def __init__(self, token: str | None) -> None:
        super().__init__("unauthenticated")
        self.presented = token is not None


class BatchTooLarge(HTTPException):
    """A batch of more operations than ``EDITGRAPH_MAX_BATCH_OPERATIONS``, found by editgraph
    before strawberry counts them."""

    def __init__(self, limit: int) -> None:
        super().__init__(400, f"at most {limit} operations per request")


def capped(receive: Receive, limit: int) -> Receive:
    """``receive``, counting body bytes: past ``limit`` it raises instead of buffering more."""
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
        return message

    return counted


def _json_body(value: object) -> bool:
    """An operation object, or a batch of them."""
    return isinstance(value, dict) or (
        isinstance(value, list) and all(isinstance(item, dict) for item in value)
    )


class _RequestAdapter(StarletteRequestAdapter):
    """Keeps the Starlette request within reach, so uploads can stream from it."""

    def __init__(self, request: Request) -> None:
        super().__init__(request)
        self.starlette_request = request


@dataclass(frozen=True)
class Services:
    """The long-lived things every request shares. The app's lifespan builds them once the
    queue and the bus are connected, and every request finds them in its lifespan state."""

    settings: Settings
    db: Database
    store: MediaStore
    signer: MediaSigner
    queue: ArqQueue
    bus: EventBus
    # The figures of the database and the store, for /metrics and the metrics listener.
    cluster: Cluster
    # Long GC stages started over GraphQL run here; the lifespan stops them at shutdown.
    background: Background

    def link(self, key: str) -> str:
        """A link to a stored file (presigned by a bucket, or a signed /media link) or to
        a segmented proxy's playlist (always signed here: the server writes playlists)."""
        if not keys.is_hls(key):
            presigned = self.store.url(key, self.signer.ttl_s)
            if presigned is not None:
                return presigned
        return self.signer.url(key)

    async def ping_redis(self) -> None:
        """Raise unless Redis answers within a second (a hung Redis must not hang /healthz)."""
        await asyncio.wait_for(self.queue.pool.ping(), timeout=1.0)


class AppState(TypedDict):
    """What the app's lifespan yields; each request and websocket gets a shallow copy."""

    services: Services


def services_of(connection: HTTPConnection) -> Services:
    """The services of the running app, from a request's or a websocket's lifespan state."""
    try:
        services: Services = connection.state.services
    except AttributeError:
        raise RuntimeError("editgraph's lifespan has not run: serve it with lifespan on") from None
    return services


class _TransportWS(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws, with the socket's token asked again before each operation: a
    token revoked (or expired) since connection_init closes the socket (4401), and the
    client signs in again."""

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        context = self.context
        if (
            isinstance(context, Context)
            and context.caller is not None
            and context.still_valid is not None
            and not await context.still_valid(context.caller)
        ):
            await self.websocket.close(code=4401, reason=UnauthenticatedError(True).message)
            return
        await super().handle_subscribe(message)


class EditgraphGraphQL(GraphQL[Context, None]):
    """The /graphql endpoint: HTTP, graphql-transport-ws and GraphiQL in development."""

    request_adapter_class = _RequestAdapter
    graphql_transport_ws_handler_class = _TransportWS

    def __init__(self, settings: Settings) -> None:
        limits = QueryLimits(
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_query_aliases,
            max_tokens=settings.max_query_tokens,
            max_field_comparisons=settings.max_field_comparisons,
            max_variable_values=settings.max_variable_values,
            anonymous_introspection=settings.graphiql_enabled,
        )
        super().__init__(
            build_schema(
                limits,
                production=settings.env == "production",
                max_batch=settings.max_batch_operations,
                observer=metrics.observe_operation,
            ),
            graphql_ide="graphiql" if settings.graphiql_enabled else None,
            multipart_uploads_enabled=True,
            allow_queries_via_get=False,
            max_subscriptions_per_connection=settings.subscriptions_per_connection,
        )
        self.settings = settings
        self.origins = settings.origin_policy()

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL at /graphql in development: editgraph's page (editgraph/graphiql.py), whose
        assets this server serves, under a CSP that admits nothing from elsewhere."""
        return graphiql.page()

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        """A cross-origin websocket opens from the pages CORS allows (editgraph/origins.py)."""
        return self.origins.allows(origin)

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        """Strawberry's, carrying the media type the client accepts to ``create_response``."""
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = graphql_http.response_media_type(request.headers.get("accept"))
        return sub_response

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        """The GraphQL response in the media type the client accepts, with the status the
        GraphQL-over-HTTP specification gives it (editgraph/graphql_http.py)."""
        media_type = sub_response.media_type or graphql_http.JSON
        status = 200
        if isinstance(response_data, dict):  # a batch is always a 200 (no spec covers it)
            status, body = graphql_http.shape(media_type, dict(response_data))
            response_data = cast(GraphQLHTTPResponse, body)
        response = Response(
            self.encode_json(response_data),
            status_code=sub_response.status_code or status,
            media_type=graphql_http.content_type(media_type),
        )
        response.headers.raw.extend(sub_response.headers.raw)
        if sub_response.background:
            response.background = sub_response.background
        return response

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        services = services_of(request)
        websocket = isinstance(request, WebSocket)
        # Websockets authenticate with their connection_init payload (on_ws_connect);
        # HTTP requests were authenticated in __call__, before their body was read.
        actor = None if websocket else getattr(request.state, "actor", None)
        return Context(
            db=services.db,
            store=services.store,
            queue=services.queue,
            events=services.bus,
            export_preset=services.settings.export,
            media_url=services.link,
            caller=actor,
            token_presented=not websocket and auth.bearer(request.headers.get("authorization"))
            is not None,
            long_lived=websocket,
            background=services.background,
            op_limits=services.settings.op_limits(),
            still_valid=partial(self._still_valid, services.db) if websocket else None,
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Accept a websocket only with a valid token in its connection_init payload."""
        # Any letter case: clients send "Authorization" as often as "authorization".
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        value = next((v for k, v in params.items() if str(k).lower() == "authorization"), None)
        value = value if isinstance(value, str) else None
        actor = await self._authenticate(context.db, value)
        if actor is None:
            presented = auth.bearer(value) is not None
            raise ConnectionRejectionError(
                {"message": UnauthenticatedError(presented).message, "code": "UNAUTHENTICATED"}
            )
        context.sign_in(actor)
        return None

    async def parse_multipart(self, request: AsyncHTTPRequestAdapter) -> dict[str, Any]:
        assert isinstance(request, _RequestAdapter)
        starlette_request = request.starlette_request
        # Nobody streams gigabytes to disk without a valid token.
        if getattr(starlette_request.state, "actor", None) is None:
            raise Unauthenticated(auth.bearer(starlette_request.headers.get("authorization")))
        try:
            parsed = await multipart.parse(
                starlette_request,
                services_of(starlette_request).store,
                max_file_bytes=self.settings.max_upload_bytes,
            )
        except multipart.MultipartError as exc:
            raise HTTPException(exc.status, exc.message) from exc
        starlette_request.state.uploads = parsed
        operations = parsed.fields.get("operations")
        files_map = parsed.fields.get("map")
        if not isinstance(operations, dict) or not isinstance(files_map, dict):
            parsed.discard()
            raise HTTPException(400, "a multipart request needs JSON 'operations' and 'map' fields")
        # A file is adopted (moved into place) by the one variable it stands for.
        if any(not isinstance(paths, list) or len(paths) != 1 for paths in files_map.values()):
            parsed.discard()
            raise HTTPException(400, "the multipart 'map' must name exactly one variable per file")
        try:
            replaced = replace_placeholders_with_files(operations, files_map, parsed.files)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            parsed.discard()
            raise HTTPException(
                400, "the multipart 'map' names files or paths that are missing"
            ) from exc
        self._within_batch_limit(replaced)
        return replaced

    def encode_json(self, data: object) -> str:
        """JSON, as strawberry writes it; a subscription's ``next`` message whose result the
        subscribers of an event share (schema/execution.py) is encoded once for all."""
        if isinstance(data, dict) and data.get("type") == "next" and len(data) == 3:
            payload = data.get("payload")
            if isinstance(payload, dict) and set(payload) == {"data"}:
                result = payload["data"]
                if isinstance(result, SharedData):
                    if result.encoded is None:
                        result.encoded = _dumps(payload)
                    operation = _dumps(data["id"])
                    return f'{{"id":{operation},"type":"next","payload":{result.encoded}}}'
        return _dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        """A JSON body: an operation or a batch; anything else is a 400, not a 500."""
        try:
            value = json.loads(data)
        except RecursionError:
            raise HTTPException(400, "the JSON body is nested too deeply") from None
        except ValueError:  # not JSON, or not UTF-8
            raise HTTPException(400, "Unable to parse request body as JSON") from None
        if not _json_body(value):
            raise HTTPException(400, "the JSON body must be an object, or a list of them")
        self._within_batch_limit(value)
        return value

    def _within_batch_limit(self, body: object) -> None:
        limit = self.settings.max_batch_operations
        if isinstance(body, list) and len(body) > limit:
            raise BatchTooLarge(limit)

    async def _still_valid(self, db: Database, actor: Actor) -> bool:
        """Whether a websocket's token still holds (not revoked, not expired)."""
        if actor.token_id is None:
            return True
        ttl = self.settings.token_ttl_days
        return await users.token_valid(
            db=db,
            token_id=actor.token_id,
            ttl=timedelta(days=ttl) if ttl is not None else None,
        )

    async def _authenticate(self, db: Database, authorization: str | None) -> Actor | None:
        return await authenticate(db, authorization, token_ttl_days=self.settings.token_ttl_days)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            metrics.websocket_connections.inc()
            try:
                await super().__call__(scope, receive, send)
            finally:
                metrics.websocket_connections.dec()
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        settings = self.settings
        probe = Request(scope)
        headers = probe.headers
        media_type = graphql_http.response_media_type(headers.get("accept"))
        if probe.method == "GET" and "query" in probe.query_params:
            # Operations come by POST only: a GET would put them, and what they change, in
            # URLs that proxies cache and logs keep. GET /graphql serves GraphiQL.
            refusal = _refusal("GraphQL operations are sent by POST", 405, media_type)
            refusal.headers["Allow"] = "POST"
            await refusal(scope, receive, send)
            return
        content_type = headers.get("content-type", "").strip().lower()
        multipart_body = content_type.startswith("multipart/form-data")
        body = receive
        if not multipart_body:
            # Uploads have their own limits (multipart.py); every other body is small JSON,
            # refused by its declared length before it is read, or as soon as it runs over.
            if multipart.declared_over(headers.get("content-length"), settings.max_json_bytes):
                await _too_large(settings.max_json_bytes, media_type)(scope, receive, send)
                return
            body = capped(receive, settings.max_json_bytes)
        request = Request(scope=scope, receive=body)
        # Who is asking is settled before any body is read, parsed or validated.
        request.state.actor = await self._authenticate(
            services_of(request).db, headers.get("authorization")
        )
        # Without a token only GraphiQL's schema query may run, and only where GraphiQL is
        # served (schema/limits.py); elsewhere the body is not even read.
        if (
            request.state.actor is None
            and request.method == "POST"
            and not multipart_body
            and not settings.graphiql_enabled
        ):
            presented = auth.bearer(headers.get("authorization")) is not None
            status, answer = graphql_http.shape(
                media_type, _errors(UnauthenticatedError(presented), data=None)
            )
            await _json(answer, status, media_type)(scope, receive, send)
            return
        try:
            response = await self.run(request)
        except BodyTooLarge:
            response = _too_large(settings.max_json_bytes, media_type)
        except Unauthenticated as exc:
            response = _unauthenticated(exc.presented, media_type)
        except BatchTooLarge as exc:
            response = _json(_errors(QueryTooComplexError(exc.reason)), 400, media_type)
        except HTTPException as exc:
            status = 415 if exc.reason == UNSUPPORTED_CONTENT_TYPE else exc.status_code
            response = _refusal(exc.reason, status, media_type)
        finally:
            # Whatever the resolvers did not adopt is removed when the request ends.
            uploads = getattr(request.state, "uploads", None)
            if isinstance(uploads, multipart.ParsedMultipart):
                uploads.discard()
        await response(scope, receive, send)


def _errors(exc: DomainError, **extra: object) -> dict[str, object]:
    """A GraphQL response body holding just ``exc``, with its code."""
    return {**extra, "errors": [graphql_error(exc).formatted]}


def _unauthenticated(presented: bool, media_type: str) -> Response:
    """An upload's 401, in the GraphQL error shape, saying whether the token was missing or
    invalid (no GraphQL ran: there is no ``data``)."""
    _, body = graphql_http.shape(
        graphql_http.GRAPHQL_RESPONSE, _errors(UnauthenticatedError(presented), data=None)
    )
    response = _json(body, 401, media_type)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"))


def _json(body: dict[str, object], status: int, media_type: str) -> Response:
    return JSONResponse(body, status, media_type=graphql_http.content_type(media_type))


def _refusal(reason: str, status: int, media_type: str) -> Response:
    """An HTTP-level refusal: a JSON error for a client of the GraphQL-over-HTTP
    specification (it reads errors from the body, even here), plain text for the others."""
    if media_type == graphql_http.GRAPHQL_RESPONSE:
        return _json({"errors": [{"message": reason}]}, status, media_type)
    return PlainTextResponse(reason, status_code=status)


def _too_large(limit: int, media_type: str) -> Response:
    reason = f"the request body is over the {limit} byte limit (EDITGRAPH_MAX_JSON_BYTES)"
    return _refusal(reason, 413, media_type)

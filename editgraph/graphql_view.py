"""Strawberry's ASGI view, with our context, auth and streamed multipart uploads."""

from dataclasses import dataclass
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException, StarletteRequestAdapter
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.file_uploads.utils import replace_placeholders_with_files

from editgraph import multipart
from editgraph.auth import authenticate
from editgraph.media import MediaSigner
from editgraph.settings import Settings
from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from schema.context import Context
from schema.root import schema


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

    async def ping_redis(self) -> None:
        """Raise unless Redis answers."""
        if self.queue is None:
            raise ConnectionError("the job queue is not connected")
        await self.queue.pool.ping()


class EditgraphGraphQL(GraphQL[Context, None]):
    """The /graphql endpoint: HTTP, graphql-transport-ws and GraphiQL in development."""

    request_adapter_class = _RequestAdapter

    def __init__(self, services: Services) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if services.settings.graphiql_enabled else None,
            multipart_uploads_enabled=True,
            allow_queries_via_get=False,
        )
        self.services = services
        self.export_preset = services.settings.worker_config().export

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        services = self.services
        assert services.queue is not None, "the app's lifespan connects the queue"
        actor = await authenticate(services.db, request.headers.get("authorization"))
        return Context(
            db=services.db,
            store=services.store,
            queue=services.queue,
            export_preset=self.export_preset,
            media_url=services.signer.url,
            caller=actor,
        )

    async def parse_multipart(self, request: AsyncHTTPRequestAdapter) -> dict[str, Any]:
        assert isinstance(request, _RequestAdapter)
        starlette_request = request.starlette_request
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
            response = PlainTextResponse(exc.reason, status_code=exc.status_code)
        finally:
            # Whatever the resolvers did not adopt is removed when the request ends.
            uploads = getattr(request.state, "uploads", None)
            if isinstance(uploads, multipart.ParsedMultipart):
                uploads.discard()
        await response(scope, receive, send)

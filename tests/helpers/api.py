"""The real app, called in-process over ASGI or served by uvicorn, and the documents tests send."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bench.common import serve
from editgraph.app import create_app
from editgraph.graphql_view import Services
from editgraph.settings import Settings
from models.db import Database

APPEND = """
mutation($p: ID!, $ops: [OpInput!]!, $v: Int) {
  appendOps(projectId: $p, ops: $ops, expectedVersion: $v) {
    __typename
    ... on OpsAppended { project { currentVersion } version { number parent ops { type params } } }
    ... on VersionConflict { message currentVersion }
    ... on InvalidOps { message errors { index field message } }
    ... on NotFound { message }
  }
}"""
REVERT = """
mutation($p: ID!, $n: Int!, $v: Int) {
  revertToVersion(projectId: $p, version: $n, expectedVersion: $v) {
    __typename
    ... on OpsAppended { project { currentVersion } version { number parent ops { type } } }
    ... on VersionConflict { currentVersion }
    ... on NotFound { message }
  }
}"""
CREATE = """
mutation($v: ID!, $name: String!) {
  createProject(videoId: $v, name: $name) {
    __typename
    ... on ProjectCreated { project { id name currentVersion sourceVideo { id } } }
    ... on NotFound { message }
  }
}"""
PROJECT = """query($id: ID!) { project(id: $id) { id currentVersion
  latestProxy { id version status progress url width height durationSeconds bytes error attempts }
  latestExport { id version status progress url bytes latest pinned gcState
                 render { id status error attempts width height durationSeconds } }
  exports { id version status } } }"""


class Api:
    """A GraphQL client over the real app, one bearer token at a time."""

    def __init__(self, client: httpx.AsyncClient, state: dict[str, Any], base: str = "") -> None:
        self.client = client
        self.state = state  # the app's lifespan state, as the server holds it
        self.base = base  # the server's URL when it is served by uvicorn, else ""

    @property
    def services(self) -> Services:
        """The queue, bus, store and database the running app's lifespan started."""
        services: Services = self.state["services"]
        return services

    async def query(
        self, token: str | None, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(
        self, token: str | None, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body = await self.query(token, query, variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def upload(self, token: str, path: Path, filename: str | None = None) -> httpx.Response:
        operations = (
            '{"query": "mutation($f: Upload!) { uploadVideo(file: $f) { __typename '
            "... on VideoUploaded { deduplicated video { id filename sha256 bytes durationSeconds "
            "width height fps hasAudio } } ... on InvalidMedia { message } "
            '... on TooLarge { message limitBytes } } }", "variables": {"f": null}}'
        )
        with path.open("rb") as fh:
            return await self.client.post(
                "/graphql",
                data={"operations": operations, "map": '{"0": ["variables.f"]}'},
                files={"0": (filename or path.name, fh, "video/mp4")},
                headers={"Authorization": f"Bearer {token}"},
            )


class AppFactory(Protocol):
    """The ``make_api`` fixture: the test's settings, changed by keyword, as a running app."""

    def __call__(
        self, settings: Settings | None = None, /, *, live: bool = False, **changes: Any
    ) -> AbstractAsyncContextManager[Api]: ...


def changed(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with some fields changed, validated again (production refuses unsafe ones)."""
    if not changes:
        return settings
    return Settings.model_validate({**settings.model_dump(), **changes})


def keeping_state(app: ASGIApp, state: dict[str, Any]) -> ASGIApp:
    """``app``, remembering the lifespan state dict the server gives it (uvicorn fills it
    in place when the lifespan has started, and copies it into each request)."""

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            state["shared"] = scope["state"]
        await app(scope, receive, send)

    return call


@asynccontextmanager
async def lifespan(app: ASGIApp) -> AsyncIterator[tuple[ASGIApp, dict[str, Any]]]:
    """Run ``app``'s lifespan in this task as a server does (httpx's ASGITransport runs
    none): yields the app that hands each request a shallow copy of the lifespan state,
    and that state; shuts the lifespan down at exit. A failed start raises its error."""
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}

    async def serve_lifespan() -> None:
        await app(scope, inbox.get, outbox.put)

    task = asyncio.create_task(serve_lifespan())

    async def step(event: str) -> None:
        await inbox.put({"type": f"lifespan.{event}"})
        answer = (await outbox.get())["type"]
        if answer != f"lifespan.{event}.complete":
            await task  # Starlette re-raises what failed after it answers
            raise RuntimeError(f"the app answered lifespan.{event} with {answer}")

    async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "state": state.copy()}
        await app(scope, receive, send)

    await step("startup")
    try:
        yield with_state, state
    finally:
        await step("shutdown")
        await task


@asynccontextmanager
async def running(settings: Settings, db: Database, *, live: bool = False) -> AsyncIterator[Api]:
    """The app with its lifespan: over ASGI in this task, or (``live``) behind a real uvicorn
    on a free port, which websockets and plain HTTP clients need."""
    app = create_app(settings, db=db)
    if live:
        held: dict[str, Any] = {}
        async with (
            serve(keeping_state(app, held)) as base,
            httpx.AsyncClient(base_url=base, timeout=30) as client,
        ):
            yield Api(client, held["shared"], base)
        return
    async with lifespan(app) as (with_state, state):
        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, state)


def settings_of(env: dict[str, str]) -> Settings:
    """The Settings an ``EDITGRAPH_*`` environment describes."""
    return Settings.model_validate(
        {k.removeprefix("EDITGRAPH_").lower(): v for k, v in env.items()}
    )


def code_of(body: dict[str, Any]) -> str | None:
    """The first error's code, or None when it has none (or there is no error)."""
    errors = body.get("errors") or [{}]
    found: str | None = (errors[0].get("extensions") or {}).get("code")
    return found


async def upload(api: Api, token: str, path: Path) -> dict[str, Any]:
    """Upload ``path``; the ``uploadVideo`` answer."""
    response = await api.upload(token, path)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["data"]["uploadVideo"]
    return result


async def new_project(api: Api, token: str, path: Path, name: str = "Holiday") -> str:
    """Upload ``path`` and make a project of it; the project's id."""
    video = (await upload(api, token, path))["video"]
    data = await api.data(token, CREATE, {"v": video["id"], "name": name})
    project_id: str = data["createProject"]["project"]["id"]
    return project_id


async def project(api: Api, token: str, project_id: str) -> dict[str, Any]:
    """The project with its latest proxy and export."""
    data: dict[str, Any] = (await api.data(token, PROJECT, {"id": project_id}))["project"]
    return data

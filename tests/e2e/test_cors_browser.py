"""A web app on another origin calls the API from a real browser: headless Chromium loads a
page from a second local port, which fetches over HTTP (CORS) and subscribes over the
websocket; listed origins replace the development default, and others are refused."""

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from bench.common import serve
from tests.helpers.api import AppFactory, new_project
from tests.helpers.browser import CHROMIUM, chromium
from tests.helpers.db import SQLITE_ONLY

pytestmark = [pytest.mark.slow, SQLITE_ONLY]  # what a browser allows, not the database

# Run in the page: a query by fetch, and the first event of a subscription by websocket.
FETCH = """async ({api, token}) => {
  try {
    const response = await fetch(api + "/graphql", {
      method: "POST",
      headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
      body: JSON.stringify({query: "{ me { name } }"}),
    });
    const body = await response.json();
    return {me: body.data.me.name, requestId: response.headers.get("X-Request-Id")};
  } catch (error) { return {refused: error.message}; }
}"""
SUBSCRIBE = """({api, token, project}) => new Promise((resolve) => {
  const ws = new WebSocket(api.replace("http", "ws") + "/graphql", "graphql-transport-ws");
  ws.onerror = () => resolve("refused");
  ws.onopen = () => ws.send(JSON.stringify(
    {type: "connection_init", payload: {authorization: "Bearer " + token}}));
  ws.onmessage = (message) => {
    const frame = JSON.parse(message.data);
    if (frame.type === "connection_ack") {
      ws.send(JSON.stringify({id: "1", type: "subscribe", payload: {
        query: "subscription($p: ID!) { renderEvents(projectId: $p, after: \\"0-0\\") { __typename } }",
        variables: {p: project}}}));
    } else if (frame.type === "next") {
      ws.close();
      resolve(frame.payload.data.renderEvents.__typename);
    }
  };
  setTimeout(() => resolve("no event within 10 s"), 10000);
})"""


async def page_app(request: Request) -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>a web app on its own origin</title>")


async def test_a_page_on_another_origin_fetches_and_subscribes(
    make_api: AppFactory, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    assert CHROMIUM.is_file(), "Debian's chromium is missing: run `make install`"
    alice = tokens["alice"]
    web_app = Starlette(routes=[Route("/", page_app)])
    async with (
        make_api(live=True) as api,
        serve(web_app) as page_origin,
        chromium() as browser,
    ):
        project = await new_project(api, alice, media["clip"])  # its proxy is queued
        assert page_origin != api.base
        page = await browser.new_page()
        await page.goto(page_origin + "/")
        called = await page.evaluate(FETCH, {"api": api.base, "token": alice})
        assert called["me"] == "alice"
        assert called["requestId"]  # a header CORS lets the page read
        arguments = {"api": api.base, "token": alice, "project": project}
        assert await page.evaluate(SUBSCRIBE, arguments) == "RenderQueued"
        # An API that lists other origins refuses this page, over HTTP and websockets alike.
        async with make_api(live=True, allowed_origins="https://app.example") as strict:
            refused = await page.evaluate(FETCH, {"api": strict.base, "token": alice})
            assert refused == {"refused": "Failed to fetch"}
            arguments["api"] = strict.base
            assert await page.evaluate(SUBSCRIBE, arguments) == "refused"

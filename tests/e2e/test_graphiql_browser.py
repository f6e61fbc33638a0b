"""GraphiQL works offline: headless Chromium, allowed to reach nothing but the server, opens
/graphql, runs a query with the token of its Headers tab over HTTP and a subscription over the
websocket, under the page's Content-Security-Policy."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, Route, WebSocket, WebSocketRoute

from editgraph import graphiql
from tests.helpers.api import APPEND, Api, new_project
from tests.helpers.browser import CHROMIUM, chromium
from tests.helpers.db import SQLITE_ONLY
from tests.helpers.polling import until

# What a browser makes of the page, not the database: once, on SQLite.
pytestmark = [pytest.mark.slow, SQLITE_ONLY]
NULL_ERROR = "Cannot return null for non-nullable field"
# Collects what the page's Content-Security-Policy refused, from before the page's first script.
VIOLATIONS = """
window.violations = [];
document.addEventListener("securitypolicyviolation", (e) => window.violations.push(
  {directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber}));
"""


@dataclass
class Seen:
    """What the page asked for: every request elsewhere (all refused), its websocket frames."""

    elsewhere: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def frames(self, kind: str) -> list[dict[str, Any]]:
        """The frames of one graphql-transport-ws message type, either way."""
        return [frame for frame in self.sent + self.received if frame.get("type") == kind]


@pytest.fixture
def installed() -> None:
    """What `make install` puts in place for this test, said plainly when it is missing."""
    assert CHROMIUM.is_file(), "Debian's chromium is missing: run `make install`"
    assert not graphiql.missing(), "GraphiQL's assets are missing: run `make install`"


@pytest.fixture
async def graphiql_page(installed: None, live: tuple[Api, str]) -> AsyncIterator[tuple[Page, Seen]]:
    """GraphiQL in a headless Chromium that may reach the server alone: every other request,
    HTTP or websocket, is refused and noted."""
    _, base = live
    seen = Seen()
    own_socket = base.replace("http://", "ws://", 1) + "/"

    async def elsewhere(route: Route) -> None:
        seen.elsewhere.append(route.request.url)
        await route.abort()

    async def socket_elsewhere(route: WebSocketRoute) -> None:
        seen.elsewhere.append(route.url)
        await route.close()

    def on_socket(socket: WebSocket) -> None:
        seen.sockets.append(socket.url)
        socket.on("framesent", lambda payload: seen.sent.append(json.loads(payload)))
        socket.on("framereceived", lambda payload: seen.received.append(json.loads(payload)))

    async with chromium() as browser:
        page = await browser.new_page()
        await page.route(lambda url: not url.startswith(base + "/"), elsewhere)
        await page.route_web_socket(lambda url: not url.startswith(own_socket), socket_elsewhere)
        page.on("websocket", on_socket)
        page.on("pageerror", lambda error: seen.errors.append(str(error)))
        await page.add_init_script(VIOLATIONS)
        yield page, seen


async def set_editor(page: Page, selector: str, text: str) -> None:
    """Type ``text`` over what a CodeMirror editor of the page holds, as a paste would."""
    await page.click(f"{selector} .CodeMirror")
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text(text)


async def response_pane(page: Page) -> str:
    """What GraphiQL's result pane shows."""
    text: str = await page.evaluate(
        "document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()"
    )
    return text


async def until_pane(page: Page, needle: str, within: float = 15) -> str:
    """Wait for the result pane to show ``needle``; then all of it."""
    try:
        await page.wait_for_function(
            "needle => document.querySelector('.graphiql-response .CodeMirror')"
            ".CodeMirror.getValue().includes(needle)",
            arg=needle,
            timeout=within * 1000,
        )
    except PlaywrightError as error:
        shown = await response_pane(page)
        raise AssertionError(
            f"no {needle!r} in the result pane within {within} s: {shown}"
        ) from error
    return await response_pane(page)


async def test_graphiql_runs_queries_and_subscriptions_with_nothing_from_elsewhere(
    live: tuple[Api, str],
    tokens: dict[str, str],
    media: dict[str, Path],
    graphiql_page: tuple[Page, Seen],
) -> None:
    api, base = live
    page, seen = graphiql_page
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])

    opened = await page.goto(f"{base}/graphql")
    assert opened is not None and opened.status == 200
    assert opened.headers["content-security-policy"] == graphiql.CSP
    await page.wait_for_selector(".graphiql-query-editor .CodeMirror", timeout=15_000)
    # The explorer plugin is there, in the sidebar.
    assert (
        await page.locator(".graphiql-sidebar button[aria-label='Show GraphiQL Explorer']").count()
        == 1
    )

    # The Headers tab holds alice's token: a query goes by POST with it, and shows her name.
    await page.click(".graphiql-editor-tools button[data-name='headers']")
    headers_editor = ".graphiql-editor-tool .graphiql-editor:not(.hidden)"
    await set_editor(page, headers_editor, json.dumps({"Authorization": f"Bearer {alice}"}))
    await set_editor(page, ".graphiql-query-editor", "{ me { name isAdmin } }")
    async with page.expect_request(
        lambda r: r.url == f"{base}/graphql" and r.method == "POST"
    ) as posted:
        await page.click(".graphiql-execute-button")
    request = await posted.value
    assert (await request.all_headers())["authorization"] == f"Bearer {alice}"
    shown = json.loads(await until_pane(page, '"alice"'))
    assert shown == {"data": {"me": {"name": "alice", "isAdmin": False}}}
    assert not seen.sockets  # queries never open the websocket

    # A subscription goes over the websocket, authenticated by its connection_init payload,
    # and shows the event an edit of alice's project sends.
    subscription = f'subscription {{ renderEvents(projectId: "{pid}") {{ __typename render {{ kind status }} }} }}'
    await set_editor(page, ".graphiql-query-editor", subscription)
    # Run at once, as a paste then Ctrl-Enter is: GraphiQL has not parsed the new text yet (it
    # waits 100 ms), so on its own it would POST the subscription and show a null error.
    await page.click(".graphiql-execute-button")

    async def subscribed() -> bool:
        return bool(seen.frames("subscribe"))

    await until(subscribed, within=15, what="GraphiQL's subscribe message")
    await api.data(alice, APPEND, {"p": pid, "ops": [{"grayscale": True}]})
    shown = json.loads(await until_pane(page, "RenderQueued"))
    assert shown == {
        "data": {
            "renderEvents": {
                "__typename": "RenderQueued",
                "render": {"kind": "PROXY", "status": "QUEUED"},
            }
        }
    }
    assert seen.sockets == [f"{base.replace('http://', 'ws://', 1)}/graphql"]
    # GraphiQL adds the Headers tab as it is; the page adds the name the server reads.
    assert seen.frames("connection_init")[0]["payload"]["authorization"] == f"Bearer {alice}"
    assert seen.frames("connection_ack") and seen.frames("next")
    assert seen.frames("subscribe")[0]["payload"]["query"] == subscription
    assert NULL_ERROR not in await response_pane(page)
    assert not [frame for frame in seen.received if NULL_ERROR in json.dumps(frame)]

    # A dialog adds a <style> element (to lock the page's scroll): the CSP admits it.
    await page.click("button[aria-label='Open settings dialog']")
    await page.wait_for_selector(".graphiql-dialog-title:text('Settings')")
    await page.keyboard.press("Escape")

    # Nothing elsewhere was even asked for, nothing was refused by the page's CSP, and no
    # script failed.
    assert seen.elsewhere == []
    assert await page.evaluate("window.violations") == []
    assert seen.errors == []

"""A proxy plays in a browser: Chromium (Debian's) runs hls.js on a page served at the
server's own origin, waits for ProxyPlayable over the GraphQL websocket, and plays the
render's playlistUrl while the proxy grows and again after it is done."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page
from starlette.responses import FileResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from bench.common import serve
from editgraph.app import create_app
from editgraph.settings import Settings
from models.db import Database
from tests.helpers.api import Api, keeping_state, new_project, project
from tests.helpers.browser import CHROMIUM, chromium
from tests.helpers.db import SQLITE_ONLY
from tests.helpers.polling import until
from tests.helpers.worker import WorkerFactory

# What a browser makes of the playlist, not the database: once, on SQLite.
pytestmark = [pytest.mark.slow, SQLITE_ONLY]
ROOT = Path(__file__).resolve().parents[2]
HLS_JS = ROOT / "node_modules" / "hls.js" / "dist" / "hls.min.js"  # `make install`: npm ci
PLAYER = Path(__file__).with_name("hls_player.html")
LENGTH, FRAME = 20.0, 1 / 30  # the long_clip fixture's


def with_player(app: ASGIApp) -> ASGIApp:
    """``app``, with the player page and hls.js at /__player/ (the test's own, not editgraph's):
    the page is the server's own origin, as a web app behind the same host would be."""
    files = {"index.html": (PLAYER, "text/html"), "hls.min.js": (HLS_JS, "text/javascript")}

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        name = scope.get("path", "").removeprefix("/__player/")
        if scope["type"] == "http" and name in files:
            path, media_type = files[name]
            await FileResponse(path, media_type=media_type)(scope, receive, send)
        else:
            await app(scope, receive, send)

    return call


@pytest.fixture
async def served(settings: Settings, db: Database) -> AsyncIterator[tuple[Api, str]]:
    """The app behind uvicorn on a free port, serving the player page too."""
    held: dict[str, Any] = {}
    app = create_app(settings, db=db)
    async with (
        serve(with_player(keeping_state(app, held))) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as client,
    ):
        yield Api(client, held["shared"], base), base


@pytest.fixture
def installed() -> None:
    """What `make install` puts in place for these tests, said plainly when it is missing."""
    assert CHROMIUM.is_file(), "Debian's chromium is missing: run `make install`"
    assert HLS_JS.is_file(), "hls.js is missing: run `make install` (it runs npm ci)"


@pytest.fixture
async def open_page(
    installed: None, served: tuple[Api, str]
) -> AsyncIterator[Callable[[], Awaitable[Page]]]:
    """``await open_page()``: a new tab of one headless Chromium on the player page."""
    _, base = served
    async with chromium() as browser:

        async def start() -> Page:
            page = await browser.new_page()
            await page.goto(f"{base}/__player/index.html")
            return page

        yield start


async def seen(page: Page) -> dict[str, Any]:
    """What the page's player did, and what its video shows now."""
    state: dict[str, Any] = await page.evaluate("state()")
    return state


async def until_seen(page: Page, condition: str, within: float) -> dict[str, Any]:
    """Wait for a JavaScript condition on ``video`` (the page's player), stopping at a fatal
    hls.js error; then what the player saw (all of it in the failure message)."""
    try:
        await page.wait_for_function(
            "(video => (" + condition + "))(document.getElementById('preview'))"
            " || window.seen.errors.some(e => e.fatal) || window.seen.mediaError",
            timeout=within * 1000,
        )
    except PlaywrightError as error:
        raise AssertionError(f"no {condition} within {within} s: {await seen(page)}") from error
    state = await seen(page)
    assert not [e for e in state["errors"] if e["fatal"]], state["errors"]
    assert state["mediaError"] is None, state
    return state


async def proxy_done(api: Api, token: str, pid: str) -> bool:
    latest = (await project(api, token, pid))["latestProxy"]
    return bool(latest) and latest["status"] == "DONE"


async def test_a_proxy_plays_in_hls_js_while_it_grows_and_after(
    served: tuple[Api, str],
    tokens: dict[str, str],
    long_clip: Path,
    run_worker: WorkerFactory,
    open_page: Callable[[], Awaitable[Page]],
) -> None:
    api, _ = served
    alice = tokens["alice"]
    pid = await new_project(api, alice, long_clip)  # 20 s, 1280x720 at 30 fps, with sound
    page = await open_page()
    # The page subscribes before any worker runs, as an editor opens before the edit lands.
    playable = asyncio.ensure_future(page.evaluate("a => whenPlayable(...a)", [pid, alice]))
    async with run_worker():
        render = await asyncio.wait_for(playable, 60)
        assert render["status"] == "RUNNING"
        await page.evaluate("url => play(url)", render["playlistUrl"])

        # While it grows: hls.js starts from the first second of an EVENT playlist that
        # lists only part of the proxy, and the picture and the sound play on.
        growing = await until_seen(page, "video.currentTime >= 3", within=30)
        assert growing["startedWhileLive"] is True, growing
        assert 1 <= growing["listedAtStart"] < 10, growing
        assert (growing["width"], growing["height"]) == (854, 480)
        assert growing["audioTracks"] == 1 and growing["audioBytes"] > 0, growing
        assert growing["frags"]["main"] >= 2 and growing["frags"]["audio"] >= 2, growing

        await until(lambda: proxy_done(api, alice, pid), what="the proxy", within=60)

    # The same player, kept open: its playlist ends, and it plays on to the last frame.
    await page.evaluate("document.getElementById('preview').playbackRate = 4")
    grown = await until_seen(page, "video.ended", within=30)
    assert grown["levels"][0]["live"] and not grown["levels"][-1]["live"], grown["levels"]
    assert grown["listed"] == 10 and grown["frags"]["main"] >= 10, grown
    ends_at = grown["duration"]
    assert grown["currentTime"] == pytest.approx(ends_at, abs=FRAME)
    # The picture lasts the version's length to the frame. The element takes the longer of
    # picture and sound, and the sound rendition keeps the AAC encoder's priming and last
    # frame's padding (here 2.5 AAC frames at 48 kHz: 20.053 s), so it may end that much later.
    assert grown["levels"][-1]["total"] == pytest.approx(LENGTH, abs=FRAME)
    assert ends_at == pytest.approx(LENGTH, abs=0.06)

    # After it is done: a new viewer gets the whole proxy at once, from the same link.
    again = await open_page()
    await again.evaluate("url => play(url)", render["playlistUrl"])
    done = await until_seen(again, "video.currentTime >= 1", within=30)
    assert done["startedWhileLive"] is False and done["levels"] == [grown["levels"][-1]], done
    # hls.js takes the duration from the playlist (the picture's length) and stretches it to
    # the sound's end once that is buffered: either, depending on how far it has loaded.
    assert LENGTH - FRAME <= done["duration"] <= ends_at + FRAME, done
    assert (done["width"], done["height"]) == (854, 480)
    await again.evaluate("document.getElementById('preview').currentTime = 18")
    end = await until_seen(again, "video.ended", within=15)
    assert end["currentTime"] == pytest.approx(ends_at, abs=FRAME), end

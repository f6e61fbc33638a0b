"""The admin console works offline: headless Chromium, allowed to reach nothing but the server,
opens /admin, signs in with root's token and shows storage, the render queue, the GC and its
audit, users and projects; its GC buttons mark, archive, restore and (once confirmed) delete,
as the API then reports. A user's token shows the API's FORBIDDEN instead of data."""

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, Route

from editgraph import admin_console
from models.db import Database
from models.store import MediaStore
from resolvers import ids, users
from resolvers.users import Actor
from tests.helpers.api import CREATE, Api, upload
from tests.helpers.browser import CHROMIUM, chromium
from tests.helpers.db import SQLITE_ONLY
from tests.helpers.gc import exports_on_disk
from tests.helpers.polling import until
from tests.helpers.worker import WorkerFactory

# What a browser makes of the page, not the database: once, on SQLite.
pytestmark = [pytest.mark.slow, SQLITE_ONLY]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "admin-console.png"
TOKEN_KEY = "editgraph.admin.token"
# A project name is the user's to choose: the console shows it as text, never as markup.
HOSTILE = '<img src=x onerror="window.pwned=1"> Trailer & <b>co</b>'
VIOLATIONS = """
window.violations = [];
document.addEventListener("securitypolicyviolation", (e) => window.violations.push(
  {directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber}));
"""
EXPORTS = "query($p: ID!) { project(id: $p) { exports { version gcState } } }"
QUEUE = "{ renderQueue { kinds { queued running } recentFailures { error } } }"


@dataclass
class Seen:
    """What the page asked for elsewhere (all refused), and the scripts that failed."""

    elsewhere: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Data:
    """What the console should show: alice's project with three 40-day-old exports on disk
    (v3 her latest), and her project with a hostile name whose export failed."""

    gc_project: str
    hostile_project: str


@pytest.fixture
async def admin_page(live: tuple[Api, str]) -> AsyncIterator[tuple[Page, Seen]]:
    """The console's browser, which may reach the server alone: every other request is
    refused and noted."""
    assert CHROMIUM.is_file(), "Debian's chromium is missing: run `make install`"
    _, base = live
    seen = Seen()

    async def elsewhere(route: Route) -> None:
        seen.elsewhere.append(route.request.url)
        await route.abort()

    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.route(lambda url: not url.startswith(base + "/"), elsewhere)
        page.on("pageerror", lambda error: seen.errors.append(str(error)))
        await page.add_init_script(VIOLATIONS)
        yield page, seen


@pytest.fixture
async def data(
    live: tuple[Api, str],
    tokens: dict[str, str],
    db: Database,
    media: dict[str, Path],
    run_worker: WorkerFactory,
) -> Data:
    """The data, made through the real domain and API, and rendered by a real worker: real
    proxies, and an export that fails because its source's file is gone."""
    api, _ = live
    alice = tokens["alice"]
    owner = Actor.of(next(u for u in await users.list_users(db=db) if u.name == "alice"))
    store = api.services.store
    assert isinstance(store, MediaStore)
    setup = await exports_on_disk(db, api.services.queue, store, owner, media["clip"], count=3)
    video = (await upload(api, alice, media["other"]))["video"]
    created = await api.data(alice, CREATE, {"v": video["id"], "name": HOSTILE})
    hostile = created["createProject"]["project"]["id"]

    async def idle() -> bool:
        kinds = (await api.data(tokens["root"], QUEUE))["renderQueue"]["kinds"]
        return all(k["queued"] == 0 and k["running"] == 0 for k in kinds)

    async with run_worker():
        await until(idle, within=60, what="the proxies to render")
        # Exports read the original: without it, the export fails (once, for good).
        store.path(f"videos/{video['sha256']}.mp4").unlink()
        queued = await api.data(
            alice,
            "mutation($p: ID!) { requestExport(projectId: $p) { __typename } }",
            {"p": hostile},
        )
        assert queued["requestExport"]["__typename"] == "ExportQueued"

        async def failed() -> list[Any]:
            failures: list[Any] = (await api.data(tokens["root"], QUEUE))["renderQueue"][
                "recentFailures"
            ]
            return failures

        await until(failed, within=60, what="the export to fail")
    return Data(ids.encode("Project", setup.project_id), hostile)


async def gc_states(api: Api, token: str, project_id: str) -> dict[int, str]:
    """The GC state of each export of the project, as the API reports it."""
    listing = await api.data(token, EXPORTS, {"p": project_id})
    return {e["version"]: e["gcState"] for e in listing["project"]["exports"]}


async def settled(page: Page) -> None:
    """Wait until the console has loaded everything again and no GC action runs."""
    await page.wait_for_function(
        # A function, not an expression: the page's CSP refuses eval, which an expression needs.
        "() => document.getElementById('console').dataset.state === 'ready'"
        " && !document.getElementById('gc-mark').disabled",
        timeout=20_000,
    )


async def sign_in(page: Page, token: str) -> None:
    await page.fill("#token", token)
    await page.click("#sign-in button[type=submit]")
    await settled(page)


async def texts(page: Page, selector: str) -> list[str]:
    return await page.locator(selector).all_inner_texts()


async def attributes(page: Page, selector: str, name: str) -> list[str | None]:
    return [
        await element.get_attribute(name) for element in await page.query_selector_all(selector)
    ]


async def run_gc(page: Page, button: str, action: str) -> str:
    """Click a GC button whose run needs no confirmation; its progress line when it is done."""
    await page.click(button)
    done = f"#gc-progress[data-action='{action}'][data-status='DONE']"
    await page.wait_for_selector(done, timeout=20_000)
    await settled(page)
    return await page.inner_text("#gc-progress-text")


async def test_the_console_shows_the_api_and_runs_the_gc_with_nothing_from_elsewhere(
    live: tuple[Api, str],
    tokens: dict[str, str],
    data: Data,
    admin_page: tuple[Page, Seen],
) -> None:
    api, base = live
    page, seen = admin_page
    root, alice = tokens["root"], tokens["alice"]

    opened = await page.goto(f"{base}/admin")
    assert opened is not None and opened.status == 200
    assert opened.headers["content-security-policy"] == admin_console.CSP
    await sign_in(page, root)
    assert await page.inner_text("#who") == "Signed in as root (admin)"
    assert await page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == root
    assert await page.evaluate("localStorage.length") == 0
    assert await page.context.cookies() == []
    assert await page.is_hidden("#message")

    # Storage: a bar per area, with its size; alice's three exports are 800 bytes each.
    areas = await attributes(page, "#storage .bar-row", "data-area")
    assert areas == ["videos", "proxy", "export", "archive", "segments", "temp"]
    export_bar = await page.inner_text("#storage .bar-row[data-area='export'] .bar-value")
    assert export_bar == "2.40 kB · 3 files"
    assert (
        await page.inner_text("#storage .bar-row[data-area='proxy'] .bar-value") != "0 B · 0 files"
    )
    widths = await page.eval_on_selector_all(
        "#storage .bar-fill", "bars => bars.map(b => b.getBoundingClientRect().width)"
    )
    assert max(widths) > 100 and min(widths) == 0  # the largest fills its track; temp is empty

    # The render queue: each kind, and the failed export with its reason.
    assert await attributes(page, "#queue tr[data-kind]", "data-kind") == ["PROXY", "EXPORT"]
    failures = await texts(page, "#queue [data-render-id]")
    assert len(failures) == 1 and "source video's file is missing" in failures[0]
    assert HOSTILE in failures[0]  # named by its project, as text

    # The GC's dry run: v1 and v2 (v3 is the latest); users and their projects, as text.
    candidates = "#gc tr[data-export-id]"
    assert await attributes(page, candidates, "data-version") == ["1", "2"]
    assert "Mark would flag 2 exports (1.60 kB)" in await page.inner_text("#gc .summary")
    assert await attributes(page, "#users article.user", "data-user") == ["alice", "bob", "root"]
    assert HOSTILE in await texts(page, "#users .project-name")
    assert await page.locator("#users img, #users b").count() == 0
    assert await page.evaluate("window.pwned") is None
    history = f"#users .project[data-project-id='{data.gc_project}'] tr[data-version]"
    assert await attributes(page, history, "data-version") == ["3", "2", "1"]
    assert await attributes(page, history, "data-latest") == ["true", "false", "false"]

    # Mark, then archive: the API reports what the console did.
    assert "marked 2" in await run_gc(page, "#gc-mark", "mark")
    assert await gc_states(api, alice, data.gc_project) == {1: "MARKED", 2: "MARKED", 3: "NONE"}
    assert await page.locator(candidates).count() == 0
    assert "archived 2" in await run_gc(page, "#gc-archive", "archive")
    assert await gc_states(api, alice, data.gc_project) == {1: "ARCHIVED", 2: "ARCHIVED", 3: "NONE"}
    assert await attributes(page, history, "data-gc-state") == ["NONE", "ARCHIVED", "ARCHIVED"]
    archived = await page.inner_text("#storage .bar-row[data-area='archive'] .bar-value")
    assert archived == "1.60 kB · 2 files"

    # Restore v1 from its project's history.
    await page.click(f"{history}[data-version='1'] button.restore")
    await page.wait_for_selector("#notice:has-text('Restored')")
    await settled(page)
    assert await gc_states(api, alice, data.gc_project) == {1: "NONE", 2: "ARCHIVED", 3: "NONE"}
    assert await page.locator(f"{history} button.restore").count() == 1  # v2's
    audit = await texts(page, "#audit tr[data-audit-id]")
    assert len(audit) == 5  # two marks, two archives, one restore
    assert all("root" in line for line in audit)
    assert await page.locator("#runs tr[data-run-id]").count() == 2  # restores are no run

    # The token stays for this tab across a reload, and the console with it.
    await page.reload()
    await settled(page)
    assert await page.locator("#storage .bar-row").count() == 6
    # The README's picture: written when asked for (it holds times, so it changes each run).
    shot = await page.screenshot(full_page=True)
    assert shot.startswith(b"\x89PNG") and len(shot) > 20_000
    if os.environ.get("EDITGRAPH_UPDATE_SCREENSHOTS"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(shot)

    # Delete first shows what it would delete; cancelled, nothing runs.
    await page.click("#gc-delete")
    await page.wait_for_selector("#confirm[open]")
    shown = await page.inner_text("#confirm-text")
    assert "0 archived exports (0 B) archived more than 30 days ago" in shown
    await page.click("#confirm-cancel")
    await page.wait_for_selector("#notice:has-text('Delete cancelled')")
    await settled(page)
    assert await page.locator("#runs tr[data-run-id]").count() == 2

    # A full cycle with no time in the archive: confirmed, it deletes v1 and v2 for good.
    await page.fill("#days-in-archive", "0")
    await page.click("#gc-full-cycle")
    await page.wait_for_selector("#confirm[open]")
    shown = await page.inner_text("#confirm-text")
    assert "1 export (800 B) older than 30 days" in shown
    assert "1 archived export (800 B) archived more than 0 days ago" in shown
    assert "the exports this run archives are deleted too" in shown
    await page.click("#confirm-ok")
    await page.wait_for_selector(
        "#gc-progress[data-action='full-cycle'][data-status='DONE']", timeout=20_000
    )
    await settled(page)
    assert "deleted 2" in await page.inner_text("#gc-progress-text")
    assert await gc_states(api, alice, data.gc_project) == {1: "DELETED", 2: "DELETED", 3: "NONE"}
    assert (
        await page.inner_text("#storage .bar-row[data-area='archive'] .bar-value")
        == "0 B · 0 files"
    )

    # Sign out: the token is forgotten, and the data with it.
    await page.click("#sign-out")
    assert await page.evaluate("sessionStorage.length") == 0
    assert await page.locator("#storage .bar-row, #users article").count() == 0
    assert await page.is_visible("#token")

    # A user's token: the API's FORBIDDEN, said once at the top, and no data.
    await sign_in(page, alice)
    assert await page.inner_text("#who") == "Signed in as alice (not an admin)"
    message = await page.inner_text("#message")
    assert "FORBIDDEN: this field is for administrators" in message
    assert message.count("FORBIDDEN") == 1
    assert await page.locator("#storage .bar-row, #queue tr, #users article").count() == 0
    await page.click("#sign-out")

    # A token the server does not know: UNAUTHENTICATED, with its message.
    await sign_in(page, "eg_not-a-token")
    message = await page.inner_text("#message")
    assert "UNAUTHENTICATED: the bearer token is not valid" in message
    await page.click("#sign-out")
    assert await page.evaluate("sessionStorage.length") == 0

    # Nothing elsewhere was even asked for, the CSP refused nothing, and no script failed.
    assert seen.elsewhere == []
    assert await page.evaluate("window.violations") == []
    assert seen.errors == []

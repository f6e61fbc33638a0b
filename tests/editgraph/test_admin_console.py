"""The admin console's page and files, served by editgraph: a strict CSP, nothing from
elsewhere and nothing inline, its two files at /admin/, 404 for any other name."""

import re

import pytest

from editgraph import admin_console
from tests.helpers.api import Api, AppFactory
from tests.helpers.db import SQLITE_ONLY

# The HTTP edge; the database plays no part.
pytestmark = SQLITE_ONLY


def directives(csp: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in csp.split(";"))


async def test_the_page_loads_only_its_own_files_under_a_strict_csp(api: Api) -> None:
    page = await api.client.get("/admin")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == admin_console.CSP
    policy = directives(page.headers["content-security-policy"])
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'" and policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["form-action"] == "'none'"
    assert "unsafe" not in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"

    # Nothing from elsewhere, nothing inline: one script and one style, both its own.
    assert not re.search(r"https?:|//[a-z]", page.text, re.IGNORECASE)
    assert re.findall(r"<script[^>]*>", page.text) == ['<script defer src="/admin/admin.js">']
    assert "<style" not in page.text and " style=" not in page.text
    assert not re.search(r"\son[a-z]+=", page.text)  # no inline event handlers
    loaded = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert loaded == ["data:,", "/admin/admin.css", "/admin/admin.js"]
    assert (await api.client.head("/admin")).status_code == 200


async def test_its_script_and_style_are_served(api: Api) -> None:
    script = await api.client.get("/admin/admin.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["cache-control"] == "no-cache"
    assert script.headers["x-content-type-options"] == "nosniff"
    # The token lives in this tab's sessionStorage alone; API strings never become HTML.
    assert "sessionStorage.setItem(TOKEN_KEY" in script.text
    assert not re.search(r"localStorage\s*[.\[]|document\.cookie", script.text)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script.text, sink
    assert not re.search(r"https?://", script.text)
    style = await api.client.get("/admin/admin.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert "@import" not in style.text and "url(" not in style.text
    # The page's own files, as they are on disk (package-data installs them).
    assert script.content == (admin_console.STATIC / "admin.js").read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        "nope.js",
        "index.html",  # the page is served at /admin only
        "admin.JS",
        ".admin.js",
        "..%2F..%2Fadmin_console.py",
        "%2e%2e%2f%2e%2e%2fsettings.py",
        "..%5C..%5Cadmin_console.py",
        "admin.js%00.css",
    ],
)
async def test_any_other_name_is_404(api: Api, name: str) -> None:
    response = await api.client.get(f"/admin/{name}")
    assert response.status_code == 404
    assert b"BaseSettings" not in response.content and b"import" not in response.content


async def test_paths_below_a_name_are_404(api: Api) -> None:
    for path in ("/admin/../editgraph/settings.py", "/admin/static/admin.js", "/admin/x/admin.js"):
        assert (await api.client.get(path)).status_code == 404, path


async def test_it_is_served_in_production_too(make_api: AppFactory) -> None:
    async with make_api(
        env="production", secret_key="s" * 40, graphiql=False, allowed_origins=["https://x.io"]
    ) as production:
        page = await production.client.get("/admin")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == admin_console.CSP
        assert (await production.client.get("/admin/admin.js")).status_code == 200

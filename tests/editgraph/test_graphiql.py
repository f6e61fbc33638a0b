"""GraphiQL's page and assets, served by editgraph: the page's CSP, pinned bytes at
/graphiql/, 404 for any other name, 503 (saying what to run) when the assets are missing."""

import re
import shutil
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from editgraph import graphiql
from tests.helpers.api import Api, AppFactory
from tests.helpers.db import SQLITE_ONLY

NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"


@pytest.fixture
def installed() -> None:
    """What `make install` puts in place, said plainly when it is missing."""
    assert not graphiql.missing(), "GraphiQL's assets are missing: run `make install`"


def served_from(vendor: Path) -> httpx.AsyncClient:
    """GraphiQL's page and assets with their files in ``vendor``, over ASGI."""

    async def page(_: Request) -> Response:
        return graphiql.page(vendor)

    app = Starlette(routes=[Route("/graphql", page), graphiql.route(vendor)])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@SQLITE_ONLY  # the HTTP edge; the database plays no part
async def test_the_page_loads_only_this_servers_files_under_a_strict_csp(
    installed: None, api: Api
) -> None:
    page = await api.client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert csp == graphiql.CSP
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert not re.search(r"https?://|//[a-z]", page.text, re.IGNORECASE)
    assert "<script>" not in page.text and "<style" not in page.text  # nothing inline
    loaded = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert loaded == [
        "data:,",  # the empty icon
        *(f"/graphiql/{name}" for name, a in graphiql.ASSETS.items() if a.media_type == "text/css"),
        "/graphiql/page.css",
        *(
            f"/graphiql/{n}"
            for n, a in graphiql.ASSETS.items()
            if a.media_type == "text/javascript"
        ),
        "/graphiql/page.js",
    ]
    for url in loaded[1:]:
        assert (await api.client.get(url)).status_code == 200, url


@SQLITE_ONLY  # the HTTP edge; the database plays no part
async def test_each_asset_is_served_with_its_pinned_bytes(installed: None, api: Api) -> None:
    for name, asset in graphiql.ASSETS.items():
        served = await api.client.get(f"/graphiql/{name}")
        assert served.status_code == 200, name
        assert graphiql.integrity(served.content) == asset.integrity, name
        assert served.headers["content-type"].startswith(asset.media_type)
        assert "immutable" in served.headers["cache-control"]
        assert served.headers["x-content-type-options"] == "nosniff"
        # The page checks them too.
        assert f'integrity="{asset.integrity}"' in graphiql.html()
    own = await api.client.get("/graphiql/page.js")
    assert own.status_code == 200 and own.headers["cache-control"] == "no-cache"
    # Subscriptions authenticate with the Headers tab's token.
    assert "wsConnectionParams: auth ? { authorization: auth } : {}" in own.text


@SQLITE_ONLY  # the HTTP edge; the database plays no part
@pytest.mark.parametrize(
    "name",
    [
        "nope.js",
        "graphiql.min.js",  # the package's name for it, not the served one
        "page.html",  # the template: only the rendered page is served, at /graphql
        ".graphiql-3.8.3.min.js.partial",
        "..%2F..%2Fgraphiql.py",
        "%2e%2e%2f%2e%2e%2fsettings.py",
        "..%5C..%5Cgraphiql.py",
    ],
)
async def test_any_other_name_is_404(installed: None, api: Api, name: str) -> None:
    response = await api.client.get(f"/graphiql/{name}")
    assert response.status_code == 404
    assert b"BaseSettings" not in response.content and b"import" not in response.content


@SQLITE_ONLY  # the HTTP edge; the database plays no part
async def test_nothing_is_served_where_graphiql_is_off(
    installed: None, make_api: AppFactory
) -> None:
    async with make_api(graphiql=False) as closed:
        for path in ("/graphiql/page.js", f"/graphiql/{next(iter(graphiql.ASSETS))}"):
            assert (await closed.client.get(path)).status_code == 404


async def test_missing_assets_are_a_503_saying_what_to_run(installed: None, tmp_path: Path) -> None:
    vendor = tmp_path / "vendor"
    shutil.copytree(graphiql.VENDOR, vendor)
    async with served_from(vendor) as client:
        assert (await client.get("/graphql")).status_code == 200
        gone = next(iter(graphiql.ASSETS))
        (vendor / gone).unlink()
        page = await client.get("/graphql")
        assert page.status_code == 503 and "make install" in page.text
        assert "python -m editgraph.graphiql install" in page.text
        assert (await client.get(f"/graphiql/{gone}")).status_code == 503
    async with served_from(tmp_path / "never-installed") as client:
        assert (await client.get("/graphql")).status_code == 503


def test_install_copies_the_pinned_files_and_refuses_others(
    installed: None, tmp_path: Path
) -> None:
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    (vendor / "graphiql-3.8.2.min.js").write_text("an older version's file")
    written = graphiql.install(NODE_MODULES, vendor)
    assert sorted(path.name for path in vendor.iterdir()) == sorted(graphiql.ASSETS)
    assert {path.name for path in written} == set(graphiql.ASSETS)
    for name, asset in graphiql.ASSETS.items():
        assert graphiql.integrity((vendor / name).read_bytes()) == asset.integrity

    # node_modules whose React is not the pinned one: nothing is installed.
    tampered = tmp_path / "node_modules"
    for asset in graphiql.ASSETS.values():
        (tampered / asset.source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(NODE_MODULES / asset.source, tampered / asset.source)
    react = tampered / graphiql.ASSETS["react-18.2.0.production.min.js"].source
    react.write_bytes(react.read_bytes() + b"\n;window.stolen = 1;\n")
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(graphiql.InstallError, match="not the pinned"):
        graphiql.install(tampered, elsewhere)
    assert not elsewhere.exists()
    react.unlink()
    assert graphiql.main(["install", "--node-modules", str(tampered)]) == 1

"""GraphiQL, served by editgraph itself: its page, and the pinned assets the page loads from
/graphiql/ (copied out of node_modules at install time), under a Content-Security-Policy that
admits nothing from elsewhere.

``python -m editgraph.graphiql install`` (run by ``make install`` after ``npm ci``) copies the
assets into ``editgraph/static/graphiql/vendor/``, refusing any whose bytes are not the pinned ones.
"""

import argparse
import base64
import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

STATIC = Path(__file__).with_name("static") / "graphiql"
VENDOR = STATIC / "vendor"
PREFIX = "/graphiql/"


@dataclass(frozen=True)
class Asset:
    """One file of an npm package the page loads."""

    source: str  # its path under node_modules, as package-lock.json pins the package
    integrity: str  # subresource integrity of its bytes (sha384), checked at install time
    media_type: str


# Served names carry the version, so a browser may keep them forever (an upgrade is a new
# name). The hashes are those of the same files on unpkg.com, as the GraphiQL page of
# strawberry-graphql 0.341 loads them. The page loads them in this order.
ASSETS: dict[str, Asset] = {
    "react-18.2.0.production.min.js": Asset(
        "react/umd/react.production.min.js",
        "sha384-tMH8h3BGESGckSAVGZ82T9n90ztNXxvdwvdM6UoR56cYcf+0iGXBliJ29D+wZ/x8",
        "text/javascript",
    ),
    "react-dom-18.2.0.production.min.js": Asset(
        "react-dom/umd/react-dom.production.min.js",
        "sha384-bm7MnzvK++ykSwVJ2tynSE5TRdN+xL418osEVF2DE/L/gfWHj91J2Sphe582B1Bh",
        "text/javascript",
    ),
    "graphiql-3.8.3.min.js": Asset(
        "graphiql/graphiql.min.js",
        "sha384-HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie",
        "text/javascript",
    ),
    "graphiql-3.8.3.min.css": Asset(
        "graphiql/graphiql.min.css",
        "sha384-Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM",
        "text/css",
    ),
    "plugin-explorer-1.0.2.umd.js": Asset(
        "@graphiql/plugin-explorer/dist/index.umd.js",
        "sha384-2oonKe47vfHIZnmB6ZZ10vl7T0Y+qrHQF2cmNTaFDuPshpKqpUMGMc9jgj9MLDZ9",
        "text/javascript",
    ),
    "plugin-explorer-1.0.2.css": Asset(
        "@graphiql/plugin-explorer/dist/style.css",
        "sha384-5DFJlDPW2tSATRbM8kzoP1j194jexLswuNmClWoRr2Q0x7R68JIQzPHZ02Faktwi",
        "text/css",
    ),
}
# The page's own script and style, loaded after the assets; they change with editgraph, so a
# browser asks again each time (cheaply: If-None-Match).
OWN: dict[str, str] = {"page.css": "text/css", "page.js": "text/javascript"}

# Nothing from elsewhere, and no inline script. GraphiQL's dialogs (settings, shortcuts) add a
# <style> element to lock the page's scroll, hence 'unsafe-inline' for styles alone; its fonts
# are data: URLs inside its CSS. In CSP 3 'self' also admits ws:/wss: to the same host and
# port, so connect-src needs nothing more for the subscriptions' websocket.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
MISSING = (
    "GraphiQL's assets are not installed: run `make install` "
    "(or `python -m editgraph.graphiql install` after `npm ci`)\n"
)
_IMMUTABLE = "public, max-age=31536000, immutable"
_NOSNIFF = {"X-Content-Type-Options": "nosniff"}


class InstallError(Exception):
    """An asset is missing from node_modules, or its bytes are not the pinned ones."""


def integrity(data: bytes) -> str:
    """The subresource-integrity string (sha384) of ``data``."""
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def install(node_modules: Path, vendor: Path = VENDOR) -> list[Path]:
    """Copy the assets from ``node_modules`` into ``vendor`` if all are the pinned bytes."""
    checked: dict[str, bytes] = {}
    for name, asset in ASSETS.items():
        source = node_modules / asset.source
        try:
            data = source.read_bytes()
        except FileNotFoundError:
            raise InstallError(f"{source} is missing: run `npm ci` first") from None
        found = integrity(data)
        if found != asset.integrity:
            raise InstallError(f"{source} is {found}, not the pinned {asset.integrity}")
        checked[name] = data
    vendor.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in checked.items():
        # Written aside and renamed, so a running server never serves half a file.
        partial = vendor / f".{name}.partial"
        partial.write_bytes(data)
        os.replace(partial, vendor / name)
        written.append(vendor / name)
    # An older version's files go: only what the page loads is served.
    for stale in vendor.iterdir():
        if stale.name not in checked and stale.is_file():
            stale.unlink()
    return written


def missing(vendor: Path = VENDOR) -> list[str]:
    """The assets not installed in ``vendor``."""
    return [name for name in ASSETS if not (vendor / name).is_file()]


@cache
def html() -> str:
    """The page: the assets with their integrity, then the page's own style and script."""
    styles = [
        f'    <link rel="stylesheet" href="{PREFIX}{name}" integrity="{asset.integrity}" />'
        for name, asset in ASSETS.items()
        if asset.media_type == "text/css"
    ]
    scripts = [
        f'    <script defer src="{PREFIX}{name}" integrity="{asset.integrity}"></script>'
        for name, asset in ASSETS.items()
        if asset.media_type == "text/javascript"
    ]
    styles.append(f'    <link rel="stylesheet" href="{PREFIX}page.css" />')
    scripts.append(f'    <script defer src="{PREFIX}page.js"></script>')
    template = Template((STATIC / "page.html").read_text(encoding="utf-8"))
    return template.substitute(styles="\n".join(styles), scripts="\n".join(scripts))


def page(vendor: Path = VENDOR) -> Response:
    """GraphiQL's page under its CSP, or a 503 saying how to install what it needs."""
    if missing(vendor):
        return PlainTextResponse(MISSING, status_code=503)
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache", **_NOSNIFF}
    return HTMLResponse(html(), headers=headers)


def route(vendor: Path = VENDOR) -> Route:
    """GET /graphiql/{name}: the assets and the page's own script and style, else a 404."""
    # A name is only ever looked up here, never joined to a path: nothing else can be reached.
    files = {name: (vendor / name, asset.media_type, _IMMUTABLE) for name, asset in ASSETS.items()}
    files |= {name: (STATIC / name, media_type, "no-cache") for name, media_type in OWN.items()}

    async def serve(request: Request) -> Response:
        found = files.get(request.path_params["name"])
        if found is None:
            return PlainTextResponse("no such GraphiQL file", status_code=404)
        path, media_type, cache_control = found
        if not path.is_file():
            return PlainTextResponse(MISSING, status_code=503)
        return FileResponse(
            path, media_type=media_type, headers={"Cache-Control": cache_control, **_NOSNIFF}
        )

    return Route(PREFIX + "{name}", serve, methods=["GET", "HEAD"])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m editgraph.graphiql install [--node-modules DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m editgraph.graphiql", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    installing = commands.add_parser("install", help="copy GraphiQL's assets out of node_modules")
    installing.add_argument("--node-modules", type=Path, default=Path("node_modules"))
    arguments = parser.parse_args(argv)
    try:
        written = install(arguments.node_modules)
    except InstallError as exc:
        print(f"editgraph.graphiql: {exc}", file=sys.stderr)
        return 1
    print(f"GraphiQL: {len(written)} assets checked and installed in {VENDOR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

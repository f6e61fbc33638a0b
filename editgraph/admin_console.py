"""The admin console, served by editgraph itself: one page at /admin and its own script and
style at /admin/{name}, under a Content-Security-Policy that admits nothing from elsewhere.

The page holds no secret and needs no build step: it is plain HTML, CSS and JavaScript from
``editgraph/static/admin/``. It calls /graphql with the token the admin types in, like any
client, so the API alone decides what an account may see. It is served in every environment.
"""

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

STATIC = Path(__file__).with_name("static") / "admin"
PATH = "/admin"
PAGE = "index.html"
# The only files served under /admin/: a name is looked up here, never joined to a path.
FILES: dict[str, str] = {"admin.js": "text/javascript", "admin.css": "text/css"}

# Nothing from elsewhere and nothing inline: no inline script or style, no plugin, no form
# that submits anywhere, no framing (the console's buttons delete files). The bars of the
# storage chart are sized through the CSSOM, which style-src does not govern.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    # The files change with editgraph: a browser asks again each time (cheaply: If-None-Match).
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _file(name: str, media_type: str) -> Response:
    return FileResponse(STATIC / name, media_type=media_type, headers=HEADERS)


async def page(_: Request) -> Response:
    """GET /admin: the console's page."""
    return _file(PAGE, "text/html")


async def asset(request: Request) -> Response:
    """GET /admin/{name}: the page's script or style, else a 404."""
    name = request.path_params["name"]
    media_type = FILES.get(name)
    if media_type is None:
        return PlainTextResponse("no such admin console file", status_code=404)
    return _file(name, media_type)


def routes() -> list[Route]:
    """The console's page and its two files."""
    return [
        Route(PATH, page, methods=["GET", "HEAD"]),
        Route(PATH + "/{name}", asset, methods=["GET", "HEAD"]),
    ]

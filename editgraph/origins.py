"""Which web pages may call the API: CORS for HTTP, the Origin check for websockets.

One rule for both, from ``EDITGRAPH_ALLOWED_ORIGINS``. Unset outside production, a page
served from this machine (``http://localhost:*``, ``http://127.0.0.1:*``) may call, so a
development server such as Vite's works out of the box; in production only listed origins."""

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

# Any port of this machine, over plain HTTP: what development servers use.
LOCAL_ORIGINS = r"http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?"
# Headers a cross-origin client must be able to read: the request id for support, and what
# a player needs for ranged media requests.
EXPOSED_HEADERS = ["X-Request-Id", "Content-Length", "Content-Range", "Accept-Ranges"]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origins(value: object) -> list[str]:
    """``EDITGRAPH_ALLOWED_ORIGINS`` as a list: JSON (``["https://a.example"]``) or a
    comma-separated list (``https://a.example, https://b.example``); each one normalised."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"not a JSON list of origins: {exc}") from None
        else:
            value = [part for part in text.split(",") if part.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError("a list of origins such as https://app.example.com")
    return [normalise(origin) for origin in value]


def normalise(origin: str) -> str:
    """An origin as browsers send it (lower case, no default port, no path), or "*"."""
    origin = origin.strip()
    if origin == "*":
        return origin
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.username
    ):
        raise ValueError(f"{origin!r} is not an origin such as https://app.example.com")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}"


@dataclass(frozen=True)
class OriginPolicy:
    """The origins allowed to call, as a list and, for the development default, a pattern."""

    origins: tuple[str, ...]
    pattern: str | None

    @classmethod
    def of(cls, origins: list[str], *, production: bool) -> "OriginPolicy":
        """The policy a server runs with: listed origins, or this machine's outside production."""
        if origins:
            return cls(tuple(origins), None)
        return cls((), None if production else LOCAL_ORIGINS)

    def allows(self, origin: str) -> bool:
        """Whether a page on ``origin`` may call the API (HTTP or websocket)."""
        if "*" in self.origins:
            return True
        try:
            origin = normalise(origin)
        except ValueError:
            return False
        if origin in self.origins:
            return True
        return self.pattern is not None and re.fullmatch(self.pattern, origin) is not None

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """``app`` answering CORS preflights and marking responses for allowed origins.

        No credentials: tokens travel in the Authorization header, never in cookies."""
        return CORSMiddleware(
            app,
            allow_origins=list(self.origins),
            allow_origin_regex=self.pattern,
            allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
            allow_headers=["*"],
            allow_credentials=False,
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )

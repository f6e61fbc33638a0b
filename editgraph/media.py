"""Signed, expiring media links under /media/…, served with HTTP Range support; the secret
that signs them, and keeping their signatures out of the access log."""

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from models.store import MediaStore


class MediaSigner:
    """Signs media keys with the server secret; a link names its key and its expiry."""

    def __init__(self, secret: str, ttl_s: int, base: str = "") -> None:
        self._secret = secret.encode()
        self.ttl_s = ttl_s
        self.base = base  # EDITGRAPH_PUBLIC_URL: links are absolute under it, if set

    def signature(self, key: str, expires: int) -> str:
        """HMAC-SHA256 of key and expiry, URL-safe."""
        mac = hmac.new(self._secret, f"{key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def url(self, key: str) -> str:
        """A link to ``key`` valid for ``ttl_s`` seconds (relative unless a base is set)."""
        expires = int(time.time()) + self.ttl_s
        return f"{self.base}/media/{key}?exp={expires}&sig={self.signature(key, expires)}"

    def valid(self, key: str, expires: str, signature: str) -> bool:
        """Whether a link is untampered and unexpired."""
        # ASCII digits of a plausible length before int(): "²" or 5,000 digits are refused.
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
            return False
        if int(expires) < time.time():
            return False
        # Bytes, not str: compare_digest refuses non-ASCII text with a TypeError.
        return hmac.compare_digest(
            self.signature(key, int(expires)).encode(), signature.encode(errors="replace")
        )


def media_endpoint(
    signer: MediaSigner, store: MediaStore
) -> Callable[[Request], Awaitable[Response]]:
    """The /media/{key} handler: 403 for a bad or expired link, 404 for a missing file."""

    async def serve(request: Request) -> Response:
        key = request.path_params["key"]
        if not signer.valid(
            key, request.query_params.get("exp", ""), request.query_params.get("sig", "")
        ):
            return PlainTextResponse("this media link is invalid or has expired", status_code=403)
        try:
            path = store.path(key)
        except ValueError:
            return PlainTextResponse("this media link is invalid", status_code=403)
        if not path.is_file():
            return PlainTextResponse("this file no longer exists", status_code=404)
        return FileResponse(path, media_type="video/mp4")

    return serve


SECRET_FILE = "secret_key"  # noqa: S105 (the file name, not a secret)


def local_secret(data_dir: Path) -> str:
    """The signing secret of a development server: random, made on its first start and kept
    in ``data_dir`` (readable by its owner only), so links survive a restart."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        staged = data_dir / f".{SECRET_FILE}.{os.getpid()}"
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
        try:
            # link() never replaces: of two servers starting at once, the first one wins.
            os.link(staged, path)
        except FileExistsError:
            pass
        finally:
            staged.unlink()
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ValueError(f"{path} holds no usable secret; delete it to make a new one")
    return secret


class RedactMediaLinks(logging.Filter):
    """Drops the query string (expiry and signature) of /media links from access log lines:
    whoever reads the log could otherwise replay a link for hours."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn.access: (client, method, path with query string, HTTP version, status)
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path, mark, _ = args[2].partition("?")
            if mark and "/media/" in path:  # also behind a proxy's root_path
                record.args = (*args[:2], f"{path}?(redacted)", *args[3:])
        return True

"""Signed, expiring media links under /media/…, served with HTTP Range support."""

import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response

from models.store import MediaStore


class MediaSigner:
    """Signs media keys with the server secret; a link names its key and its expiry."""

    def __init__(self, secret: str, ttl_s: int) -> None:
        self._secret = secret.encode()
        self.ttl_s = ttl_s

    def signature(self, key: str, expires: int) -> str:
        """HMAC-SHA256 of key and expiry, URL-safe."""
        mac = hmac.new(self._secret, f"{key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def url(self, key: str) -> str:
        """A relative link to ``key`` valid for ``ttl_s`` seconds."""
        expires = int(time.time()) + self.ttl_s
        return f"/media/{key}?exp={expires}&sig={self.signature(key, expires)}"

    def valid(self, key: str, expires: str, signature: str) -> bool:
        """Whether a link is untampered and unexpired."""
        if not expires.isdigit() or int(expires) < time.time():
            return False
        return hmac.compare_digest(self.signature(key, int(expires)), signature)


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

"""/media/hls/{render}/…: the playlists and segments of a segmented proxy, each link signed
like every media link (a player follows them as they are: every link carries its own
expiry and signature)."""

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from editgraph.graphql_view import services_of
from editgraph.media import MediaSigner
from models import keys
from models.store import MediaStore
from resolvers import playlists

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
# A growing playlist changes every second or two; a finished one never, but a link expires.
NO_STORE = {"Cache-Control": "no-store"}


def hls_endpoint(
    signer: MediaSigner, store: MediaStore
) -> Callable[[Request], Awaitable[Response]]:
    """403 for a bad or expired link, 404 for what is not there (yet)."""

    async def serve(request: Request) -> Response:
        render_id: int = request.path_params["render_id"]
        name: str = request.path_params["name"]
        if not signer.valid(
            keys.hls(render_id, name),
            request.query_params.get("exp", ""),
            request.query_params.get("sig", ""),
        ):
            return PlainTextResponse("this media link is invalid or has expired", status_code=403)

        def link(other: str) -> str:
            return signer.url(keys.hls(render_id, other))

        async with services_of(request).db.read() as session:
            if name == playlists.MASTER:
                text = await playlists.master(session, store, render_id, link)
            elif name == playlists.PICTURE:
                text = await playlists.picture(session, render_id, link)
            elif name == playlists.SOUND:
                text = await playlists.sound(session, store, render_id, link)
            elif name.startswith("audio/"):
                data = await playlists.sound_file(session, store, render_id, name)
                if data is None:
                    return PlainTextResponse("this file is not there", status_code=404)
                return Response(data, media_type="video/mp4")
            else:
                data = await playlists.segment_bytes(session, store, render_id, name)
                if data is None:
                    return PlainTextResponse("this segment is not there", status_code=404)
                return Response(data, media_type="video/mp4")
        if text is None:
            return PlainTextResponse("this render has no playlist", status_code=404)
        return Response(text, media_type=PLAYLIST_TYPE, headers=NO_STORE)

    return serve

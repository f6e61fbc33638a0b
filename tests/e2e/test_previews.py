"""Previews that play at once, as a client meets them: the ProxyPlayable event over a real
websocket, then the signed HLS playlist it names, read by ffprobe over HTTP while the proxy
grows and after it is done."""

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from sqlmodel import select

from models import keys
from models.db import Database
from models.states import RenderKind
from models.tables import Render, Segment
from resolvers import ids
from tests.helpers.api import APPEND, Api, new_project, project
from tests.helpers.db import SQLITE_ONLY
from tests.helpers.polling import until
from tests.helpers.processes import ffmpeg_children, worker_process
from tests.helpers.worker import WorkerFactory

pytestmark = pytest.mark.slow
PLAYABLE = """subscription($p: ID!) { proxyPlayable(projectId: $p) {
  id version status playlistUrl url } }"""


@asynccontextmanager
async def subscribed(
    base: str, token: str, document: str, variables: dict[str, Any]
) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    transport = WebsocketsTransport(
        url=base.replace("http://", "ws://") + "/graphql",
        init_payload={"authorization": f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    async with Client(transport=transport) as session:
        stream = session.subscribe(GraphQLRequest(document, variable_values=variables))
        try:
            yield stream
        finally:
            await stream.aclose()


async def ffprobe(url: str, *entries: str) -> dict[str, Any]:
    """ffprobe over HTTP, in a thread: the server it reads runs in this test's loop."""
    done = await asyncio.to_thread(
        subprocess.run,
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries", ":".join(entries),
         "-of", "json", url],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def proxy_done(api: Api, token: str, pid: str) -> bool:
    latest = (await project(api, token, pid))["latestProxy"]
    return bool(latest) and latest["status"] == "DONE"


@SQLITE_ONLY  # what a player reads, not the database (the kill test below runs on both)
@pytest.mark.both_storages  # segments and sound from the media root or from a bucket
async def test_a_proxy_plays_from_its_first_segment_while_it_grows_and_after(
    live: tuple[Api, str],
    tokens: dict[str, str],
    long_clip: Path,
    run_worker: WorkerFactory,
) -> None:
    api, base = live
    alice = tokens["alice"]
    pid = await new_project(api, alice, long_clip)  # 20 s, 1280x720 at 30 fps
    async with (
        subscribed(base, alice, PLAYABLE, {"p": pid}) as events,
        run_worker(),
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        render = (await asyncio.wait_for(anext(events), 120))["proxyPlayable"]
        assert render["playlistUrl"].startswith("/media/hls/")
        master = await http.get(render["playlistUrl"])
        assert master.status_code == 200
        assert master.headers["content-type"].startswith("application/vnd.apple.mpegurl")
        picture_link = next(
            line for line in master.text.splitlines() if line.startswith("/media/hls/")
        )
        assert 'CODECS="avc1.' in master.text and "mp4a.40.2" in master.text
        growing = (await http.get(picture_link)).text
        assert "#EXT-X-PLAYLIST-TYPE:EVENT" in growing
        assert "#EXT-X-START:TIME-OFFSET=0" in growing
        listed = [line for line in growing.splitlines() if line.startswith("/media/hls/")]
        assert listed, "playable, yet no segment is listed"
        if render["status"] == "RUNNING":
            assert "#EXT-X-ENDLIST" not in growing or len(listed) == 10
        # The first segment plays as it is: a keyframe first, 2 s of picture.
        first = await http.get(listed[0])
        assert first.status_code == 200
        await until(lambda: proxy_done(api, alice, pid), what="the proxy", within=120)
        done = (await http.get(picture_link)).text
        assert done.rstrip().endswith("#EXT-X-ENDLIST")
        durations = [
            float(line.split(":")[1].rstrip(","))
            for line in done.splitlines()
            if line.startswith("#EXTINF")
        ]
        assert durations == pytest.approx([2.0] * 10, abs=1e-3)
        # A tampered link is refused.
        assert (await http.get(picture_link.replace("sig=", "sig=x"))).status_code == 403

    info = await ffprobe(
        base + render["playlistUrl"],
        "format=duration",
        "stream=codec_type,nb_read_frames,width,height",
    )
    assert float(info["format"]["duration"]) == pytest.approx(20.0, abs=1 / 30)
    assert "streams" in info, info
    picture = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert (picture["width"], picture["height"]) == (854, 480)
    assert int(picture["nb_read_frames"]) == 600
    assert any(s["codec_type"] == "audio" for s in info["streams"])
    # The seed's MP4, assembled from the same segments: the same frames, faststart.
    latest = (await project(api, alice, pid))["latestProxy"]
    # A bucket presigns the link itself; the server signs its own /media links.
    url = latest["url"] if latest["url"].startswith("http") else base + latest["url"]
    mp4 = await ffprobe(url, "stream=codec_type,nb_read_frames,avg_frame_rate,duration")
    video = next(s for s in mp4["streams"] if s["codec_type"] == "video")
    assert int(video["nb_read_frames"]) == 600
    assert Fraction(video["avg_frame_rate"]) == 30
    assert float(video["duration"]) == pytest.approx(20.0, abs=1 / 30)
    sound = next(s for s in mp4["streams"] if s["codec_type"] == "audio")
    # The sound is encoded once for the whole timeline: its length to within AAC's last
    # frame of padding (1024 samples, 21 ms), not a priming gap at every segment.
    assert float(sound["duration"]) == pytest.approx(20.0, abs=0.06)


async def stored_segments(db: Database, render_id: int) -> dict[str, Any]:
    """The segments a proxy encoded: key → when it was stored."""
    async with db.read() as session:
        rows = (await session.exec(select(Segment).where(Segment.render_id == render_id))).all()
    return {r.key: r.created_at for r in rows}


async def test_a_worker_killed_mid_proxy_keeps_its_segments_and_makes_each_other_once(
    app_api: Api,
    tokens: dict[str, str],
    long_clip: Path,
    env: dict[str, str],
    tmp_path: Path,
    db: Database,
) -> None:
    api, alice = app_api, tokens["alice"]
    root = Path(env["EDITGRAPH_MEDIA_ROOT"])
    pid = await new_project(api, alice, long_clip)  # 20 s: 10 segments
    # A heavy blur, so that the proxy takes seconds and is met half-way (version 0's proxy
    # is skipped as superseded).
    blur = [{"gaussianBlur": {"radius": 40}}]
    assert (await api.data(alice, APPEND, {"p": pid, "ops": blur}))["appendOps"]["__typename"] == (
        "OpsAppended"
    )
    async with db.read() as session:
        proxy = (await session.exec(select(Render).where(Render.version == 1))).one()
    assert proxy.id is not None
    with worker_process(env, tmp_path / "worker-1.log") as worker:
        # Looked at every 20 ms: the kill lands between two segments of the proxy.
        for _ in range(6000):
            done = len(await stored_segments(db, proxy.id))
            if 2 <= done < 10 and ffmpeg_children(worker):
                break
            assert done < 10, "the proxy finished before it could be stopped half-way"
            await asyncio.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    before = await stored_segments(db, proxy.id)
    files = {k: (root / keys.segment(k)).stat().st_ino for k in before}
    with worker_process(env, tmp_path / "worker-2.log"):
        await until(lambda: proxy_done(api, alice, pid), what="the proxy after restart", within=120)
    latest = (await project(api, alice, pid))["latestProxy"]
    assert latest["attempts"] == 2
    after = await stored_segments(db, proxy.id)
    # Every segment of the plan was stored, once; the ones stored before the kill are the
    # very same rows and files (kept, not made again).
    assert len(after) == 10
    assert {k: after[k] for k in before} == before
    assert {k: (root / keys.segment(k)).stat().st_ino for k in before} == files
    mp4 = await ffprobe(str(root / latest_key(pid, 1)), "stream=codec_type,nb_read_frames")
    video = next(s for s in mp4["streams"] if s["codec_type"] == "video")
    assert int(video["nb_read_frames"]) == 600
    assert list((root / "temp").iterdir()) == []


def latest_key(pid: str, version: int = 0) -> str:
    return keys.render_output(RenderKind.PROXY, ids.decode(pid, "Project"), version)

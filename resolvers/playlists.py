"""HLS playlists of segmented proxies, written from the database on each request.

A proxy's master playlist names its picture (the segments of its plan, in order) and its
sound (the HLS folder the worker writes). While the proxy grows the picture playlist is an
EVENT playlist listing the segments there so far, from the first on; ``EXT-X-ENDLIST``
comes with the last. Every link is made by the caller's ``link`` (the web layer signs
them); a segment's bytes are placed at its position on the timeline when served.
"""

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import keys
from models.store import MediaStore
from models.tables import PlanSegment, ProxyPlan, Segment
from resolvers import fmp4

Link = Callable[[str], str]
MASTER, PICTURE, SOUND = "master.m3u8", "video.m3u8", "audio/audio.m3u8"
SEGMENT_S = 2
_SOUND_FILE = re.compile(r"^audio/([A-Za-z0-9_]+\.(?:m4s|mp4|m3u8))$")
_PICTURE_SEGMENT = re.compile(r"^v/(\d{1,9})\.m4s$")
_INIT = re.compile(r"^init/([0-9a-f]{64})\.mp4$")


@dataclass(frozen=True)
class Placed:
    """One segment of a proxy's picture and where it plays, in its time scale."""

    position: int
    segment: Segment
    decode_time: int


async def _picture(session: AsyncSession, render_id: int) -> tuple[ProxyPlan | None, list[Placed]]:
    """The plan, and its segments that are there, from the first on without a gap."""
    plan = await session.get(ProxyPlan, render_id)
    if plan is None:
        return None, []
    rows = (
        await session.exec(
            select(PlanSegment.position, Segment)
            .join(Segment, col(Segment.key) == col(PlanSegment.segment_key), isouter=True)
            .where(col(PlanSegment.render_id) == render_id)
            .order_by(col(PlanSegment.position))
        )
    ).all()
    placed: list[Placed] = []
    at = 0
    for position, segment in rows:
        if segment is None or position != len(placed):
            break
        placed.append(Placed(position, segment, at))
        at += segment.ticks
    return plan, placed


async def master(
    session: AsyncSession, store: MediaStore, render_id: int, link: Link
) -> str | None:
    """The master playlist, or None for a render without a segmented plan."""
    plan, placed = await _picture(session, render_id)
    if plan is None:
        return None
    codecs = []
    if placed:
        init = await _read(store, keys.segment_init(placed[0].segment.init_sha256))
        codecs.append(fmp4.avc_codec(init))
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    sound = ""
    if plan.audio_key is not None:
        codecs.append("mp4a.40.2")
        lines.append(
            '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="sound",NAME="Sound",DEFAULT=YES,'
            f'AUTOSELECT=YES,URI="{link(SOUND)}"'
        )
        sound = ',AUDIO="sound"'
    described = f',CODECS="{",".join(codecs)}"' if codecs and all(codecs) else ""
    lines += [f"#EXT-X-STREAM-INF:BANDWIDTH=1300000{described}{sound}", link(PICTURE), ""]
    return "\n".join(lines)


async def picture(session: AsyncSession, render_id: int, link: Link) -> str | None:
    """The picture's media playlist: the segments there so far, ENDLIST with the last."""
    plan, placed = await _picture(session, render_id)
    if plan is None:
        return None
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{SEGMENT_S}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:EVENT",
        "#EXT-X-START:TIME-OFFSET=0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    init: str | None = None
    for item in placed:
        if item.segment.init_sha256 != init:
            if init is not None:
                lines.append("#EXT-X-DISCONTINUITY")
            init = item.segment.init_sha256
            lines.append(f'#EXT-X-MAP:URI="{link(f"init/{init}.mp4")}"')
        seconds = item.segment.ticks / item.segment.timescale
        lines += [f"#EXTINF:{seconds:.6f},", link(f"v/{item.position}.m4s")]
    if len(placed) == plan.total:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join([*lines, ""])


async def sound(session: AsyncSession, store: MediaStore, render_id: int, link: Link) -> str | None:
    """The sound's playlist as the worker writes it, each file named by a link."""
    plan = await session.get(ProxyPlan, render_id)
    if plan is None or plan.audio_key is None:
        return None
    try:
        text = (await _read(store, f"{plan.audio_key}/audio.m3u8")).decode()
    except OSError:
        # Not started yet: an empty EVENT playlist a player polls again.
        text = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:EVENT\n"
    out = []
    for line in text.splitlines():
        if line and not line.startswith("#") and re.fullmatch(r"[A-Za-z0-9_]+\.m4s", line):
            line = link(f"audio/{line}")
        elif line.startswith("#EXT-X-MAP:"):
            line = re.sub(
                r'URI="([A-Za-z0-9_.]+)"', lambda m: f'URI="{link("audio/" + m[1])}"', line
            )
        out.append(line)
    return "\n".join([*out, ""])


async def segment_bytes(
    session: AsyncSession, store: MediaStore, render_id: int, name: str
) -> bytes | None:
    """A picture segment placed at its position, an init section, or None."""
    found = _PICTURE_SEGMENT.match(name)
    if found:
        _, placed = await _picture(session, render_id)
        position = int(found[1])
        if position >= len(placed):
            return None
        item = placed[position]
        try:
            media = await _read(store, keys.segment(item.segment.key))
        except FileNotFoundError:
            return None  # collected since the query above
        return fmp4.placed(media, item.decode_time)
    init = _INIT.match(name)
    if init and await _uses_init(session, render_id, init[1]):
        with contextlib.suppress(FileNotFoundError):
            return await _read(store, keys.segment_init(init[1]))
    return None


async def _read(store: MediaStore, key: str) -> bytes:
    """A stored file's bytes, off the event loop (a bucket's GET takes a round trip)."""
    return await asyncio.to_thread(store.read_bytes, key)


async def _uses_init(session: AsyncSession, render_id: int, sha256: str) -> bool:
    row = (
        await session.exec(
            select(Segment.key)
            .join(PlanSegment, col(Segment.key) == col(PlanSegment.segment_key))
            .where(col(PlanSegment.render_id) == render_id, col(Segment.init_sha256) == sha256)
            .limit(1)
        )
    ).first()
    return row is not None


async def sound_file(
    session: AsyncSession, store: MediaStore, render_id: int, name: str
) -> bytes | None:
    """A file of the sound's folder (init or segment), or None."""
    found = _SOUND_FILE.match(name)
    plan = await session.get(ProxyPlan, render_id)
    if not found or plan is None or plan.audio_key is None:
        return None
    try:
        return await _read(store, f"{plan.audio_key}/{found[1]}")
    except FileNotFoundError:
        return None

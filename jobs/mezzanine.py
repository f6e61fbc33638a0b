"""The mezzanine: a normalized 480p copy of each source, made once, that proxies render from."""

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError
from sqlalchemy import update
from sqlmodel import col, select

from jobs import edl
from jobs.errors import Permanent, Transient
from jobs.runner import run_ffmpeg, timeout_for
from jobs.runtime import Runtime
from models import keys, redis_keys
from models.tables import Blob, Video

log = logging.getLogger(__name__)
MEZZANINE_LOCK_S = 10


async def ensure_mezzanine(rt: Runtime, video: Video, blob: Blob) -> Path:
    """The 480p working copy of a source (a local file), made once per blob; concurrent
    callers wait for it."""
    key = mezzanine_key(blob)
    with contextlib.suppress(FileNotFoundError):
        return await asyncio.to_thread(rt.store.local, key)
    making_s = timeout_for(
        rt.config.render_timeout_s, rt.config.render_timeout_per_s, video.duration
    )
    # Held for a few seconds at a time and renewed while ffmpeg runs: a worker killed while
    # making the copy holds up the others for seconds, not for the longest render.
    lock = rt.redis.lock(
        redis_keys.mezzanine_lock(blob.sha256),
        timeout=MEZZANINE_LOCK_S,
        blocking_timeout=making_s + 30,
    )
    if not await lock.acquire():
        raise Transient("another worker is still making this source's 480p copy")
    lost = asyncio.Event()
    keeper = asyncio.create_task(_keep(lock, lost, blob))
    try:
        if not await asyncio.to_thread(rt.store.exists, key):
            await _make_mezzanine(rt, video, blob, lost)
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        with contextlib.suppress(LockError):  # it lapsed meanwhile: nothing to give back
            await lock.release()
    return await asyncio.to_thread(rt.store.local, key)


async def _keep(lock: Lock, lost: asyncio.Event, blob: Blob) -> None:
    """Renew the lock for as long as the copy is being made (the source's download, ffmpeg
    and the upload alike); set ``lost`` if it lapsed, so ffmpeg stops."""
    while True:
        await asyncio.sleep(MEZZANINE_LOCK_S / 3)
        try:
            await lock.reacquire()
        except LockError:
            lost.set()  # another worker may be making the copy now: it alone
            return
        except (RedisError, OSError) as exc:
            log.warning("mezzanine lock of blob %s not renewed (%s)", blob.id, exc)


async def original(rt: Runtime, video: Video, blob: Blob) -> edl.Source:
    """The uploaded original of a video, as ffmpeg reads it (a local file)."""
    try:
        path = await asyncio.to_thread(rt.store.local, blob.key)
    except FileNotFoundError:
        raise Permanent("the source video's file is missing from the media store") from None
    return source_of(video, path)


def source_of(video: Video, path: Path) -> edl.Source:
    """A video's source as ffmpeg reads it from ``path``."""
    return edl.Source(
        path=path,
        demuxer=video.format_name,
        width=video.width,
        height=video.height,
        fps=video.fps,
        duration=video.duration,
        has_audio=video.has_audio,
    )


def mezzanine_key(blob: Blob) -> str:
    """Where a source's 480p copy lives, next to the original."""
    return keys.mezzanine(blob.sha256)


async def _make_mezzanine(rt: Runtime, video: Video, blob: Blob, lost: asyncio.Event) -> None:
    temp = rt.store.scratch(keys.mezzanine_temp(blob.sha256))
    temp.parent.mkdir(parents=True, exist_ok=True)
    source = await original(rt, video, blob)

    async def keep_going(_: float) -> bool:
        return not lost.is_set()

    try:
        outcome = await run_ffmpeg(
            edl.mezzanine_argv(source, temp),
            expected_duration=video.duration,
            timeout_s=rt.config.render_timeout_s,
            timeout_per_s=rt.config.render_timeout_per_s,
            max_memory_mb=rt.config.render_max_memory_mb,
            on_progress=keep_going,
        )
        if outcome.returncode < 0 and not outcome.timed_out:
            raise Transient("ffmpeg was stopped while making the 480p copy")
        if outcome.returncode != 0:
            raise Permanent(
                outcome.limit or "the source could not be converted to its 480p working copy"
            )
        await asyncio.to_thread(rt.store.publish, temp, mezzanine_key(blob))
    finally:
        temp.unlink(missing_ok=True)
    async with rt.db.write() as session:
        earlier = (
            await session.exec(select(Blob.mezzanine_key).where(col(Blob.id) == blob.id))
        ).first()
        await session.exec(
            update(Blob).where(col(Blob.id) == blob.id).values(mezzanine_key=mezzanine_key(blob))
        )
    if earlier and earlier != mezzanine_key(blob):
        # A copy made before proxies were segmented (its keyframes are not on the segment
        # grid): this one replaces it.
        await asyncio.to_thread(rt.store.remove, earlier)


async def mezzanine(ctx: dict[str, Any], blob_id: int) -> str:
    """Job: make a source's 480p copy right after upload, so the first proxy starts sooner."""
    rt: Runtime = ctx["runtime"]
    async with rt.db.read() as session:
        blob = await session.get(Blob, blob_id)
        video = (await session.exec(select(Video).where(Video.blob_id == blob_id))).first()
    if blob is None or video is None:
        return "gone"
    try:
        await ensure_mezzanine(rt, video, blob)
    except (Permanent, Transient) as exc:
        # The proxy job makes the copy itself if this one did not.
        log.warning("mezzanine of blob %s failed: %s", blob_id, exc)
        return "failed"
    return "done"

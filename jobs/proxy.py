"""Segmented proxies, made: the segments a version's plan misses are encoded in playback
order, each one stored under its content key the moment ffmpeg closes it; the sound is
encoded once for the whole timeline beside them; a player may start as soon as the first
segment and the first seconds of sound are there; the seed's MP4 is assembled from the
segments by remux when all are.
"""

import asyncio
import contextlib
import csv
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError
from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from jobs import edl, segments
from jobs import filtergraph as fg
from jobs.errors import Permanent, StorageFull, Transient, out_of_space
from jobs.runner import Outcome, run_ffmpeg, timeout_for
from jobs.runtime import Runtime
from models import keys, redis_keys
from models.states import RenderStatus
from models.store import MediaStore
from models.tables import PlanSegment, Project, ProxyPlan, Render, Segment, utcnow
from resolvers import fmp4, lifecycle, ops
from resolvers.presets import PROXY, Preset
from resolvers.probe import DEMUXERS

log = logging.getLogger(__name__)
# How often a segment encode looks for closed segments (a player waits for the first).
TICK_S = 0.1
# Progress is written to the database at most this often.
PROGRESS_EVERY_S = 1.0
AUDIO_PLAYLIST = "audio.m3u8"
# Names how a sound is made; a change to that makes new sound keys.
SOUND_RENDERER = "editgraph-sound-1"
# A claim on a part of a proxy lapses this long after its worker stops renewing it.
PART_CLAIM_S = 10.0
# A worker helping with a proxy waits at most this long for its first segment.
HELP_WAIT_S = 30.0
# A sound's lock lapses this long after its worker stops renewing it (a killed worker).
SOUND_LOCK_S = 10.0
VIDEO_CODEC = {"vcodec": "libx264", "bf": 0, "sc_threshold": 0}


@dataclass(frozen=True)
class Inputs:
    """What a proxy renders from: the 480p copies, the frame and the ops of its version."""

    source: edl.Source  # the project's source (its 480p copy)
    concat: dict[int, edl.Source]  # appended videos by id (their 480p copies)
    shas: dict[int, str]  # SHA-256 of each source's bytes; 0 is the project's own
    frame: ops.Frame  # the project source's logical frame
    op_list: list[ops.Op]

    def source_of(self, piece: segments.Piece) -> edl.Source:
        return self.source if piece.source == 0 else self.concat[piece.source]

    @property
    def audible(self) -> bool:
        return self.source.has_audio or any(s.has_audio for s in self.concat.values())


@dataclass
class _Progress:
    """What a proxy attempt has made so far, and what it has told subscribers."""

    rt: Runtime
    render: Render
    plan: segments.Plan
    audio_key: str | None  # the sound's folder key, if the proxy has sound
    ready: set[str]
    playable: bool = False
    stop: str | None = None  # "cancelled" or "superseded" once the attempt must stop
    written_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sound: "asyncio.Task[Outcome] | None" = None  # the sound being made, if it is
    claims: list[Lock] = field(default_factory=list)  # parts this worker is encoding
    renewed_at: float = 0.0

    @property
    def done(self) -> int:
        return sum(1 for s in self.plan.segments if s.key in self.ready)

    @property
    def total(self) -> int:
        return len(self.plan.segments)

    async def sound_started(self) -> bool:
        if self.audio_key is None:
            return True
        return "#EXTINF" in await _sound_playlist(self.rt.store, self.audio_key)

    async def check_playable(self) -> None:
        """Announce ``proxy_playable`` once the first segment and some sound are there."""
        async with self.lock:
            if self.playable or not self.plan.segments:
                return
            if self.plan.segments[0].key not in self.ready or not await self.sound_started():
                return
            self.playable = True
            await lifecycle.playable(
                db=self.rt.db,
                announce=self.rt.events.publish,
                render=self.render,
                segments=(self.done, self.total),
            )

    async def renew(self) -> None:
        """Keep the claims on the parts being encoded (a third of their life at most)."""
        now = time.monotonic()
        if self.claims and now - self.renewed_at > PART_CLAIM_S / 3:
            self.renewed_at = now
            for claim in self.claims:
                try:
                    await claim.reacquire()
                except (LockError, RedisError, OSError) as exc:
                    # At worst another worker encodes the same segments: same key, same bytes.
                    log.warning("proxy %s: claim not renewed (%s)", self.render.id, exc)

    async def heartbeat(self, fraction_of_run: float = 0.0, run: int = 0) -> bool:
        """False once the attempt must stop: its version is no longer the one anybody wants
        (checked every tick: a newer edit should not wait for this one), or it was
        cancelled. Progress and lease are written at most every ``PROGRESS_EVERY_S``."""
        if self.stop is not None:
            return False
        if await _unwanted(self.rt, self.render):
            self.stop = "superseded"
            return False
        await self.renew()
        now = time.monotonic()
        if now - self.written_at < PROGRESS_EVERY_S:
            return True
        self.written_at = now
        done = self.done + fraction_of_run * run
        alive = await lifecycle.progress(
            db=self.rt.db,
            announce=self.rt.events.publish,
            render=self.render,
            fraction=min(0.99, done / max(1, self.total)),
            lease_s=self.rt.config.render_lease_s,
            segments=(self.done, self.total),
        )
        if not alive:
            self.stop = "cancelled"
        return alive


@dataclass
class _Helping(_Progress):
    """A part of another worker's proxy: it stops with that worker's attempt, and leaves
    progress and events to it."""

    async def check_playable(self) -> None:
        return  # the first segment is never a helper's

    async def heartbeat(self, fraction_of_run: float = 0.0, run: int = 0) -> bool:
        if self.stop is not None:
            return False
        async with self.rt.db.read() as session:
            row = await session.get(Render, self.render.id)
        if (
            row is None
            or row.status != RenderStatus.RUNNING
            or row.attempts != self.render.attempts
        ):
            self.stop = "cancelled"
        elif await _unwanted(self.rt, self.render):
            self.stop = "superseded"
        else:
            await self.renew()
        return self.stop is None


async def _unwanted(rt: Runtime, render: Render) -> bool:
    """A proxy of a version that is no longer current, that nobody asked for by name."""
    if render.on_demand:
        return False
    async with rt.db.read() as session:
        project = await session.get(Project, render.project_id)
    return project is not None and project.current_version != render.version


async def produce(
    rt: Runtime, render: Render, inputs: Inputs, donor: Render | None = None
) -> tuple[str, Path | None]:
    """Make a proxy's segments, sound and MP4 (in temp/, returned for the caller to move
    into place); the outcome is "done", "cancelled" or "superseded". ``donor`` is a DONE
    proxy of the same content (a revert): its file and sound are linked, not made again."""
    assert render.id is not None
    plan = _plan(inputs)
    if not plan.segments:
        raise Permanent("this edit leaves no frame to show")
    audio_key = keys.proxy_sound(sound_key(inputs)) if inputs.audible else None
    ready = await _record_plan(rt, render, plan, audio_key)
    state = _Progress(rt, render, plan, audio_key, ready)
    workdir = rt.store.scratch(keys.render_temp(render.id, render.attempts, ".d"))
    workdir.mkdir(parents=True, exist_ok=True)
    sound: asyncio.Task[Outcome] | None = None
    try:
        if donor is not None and len(ready) == len({s.key for s in plan.segments}):
            reused = await _reuse(rt, donor, audio_key, workdir)
            if reused is not None:
                await _sound_done(rt, render)
                await state.check_playable()
                return "done", reused
        if audio_key is not None:
            sound = asyncio.create_task(_make_sound(rt, state, inputs, audio_key))
            state.sound = sound
        await state.check_playable()
        wanted = {s.key for s in plan.segments}
        for _ in range(2):
            cut = [
                segments.split(run, rt.config.proxy_parts, rt.config.proxy_part_min_segments)
                for run in plan.runs(wanted - state.ready)
            ]
            # Only a long run's later parts are offered: a short run is not worth a job.
            await _offer(rt, state, [part for pieces in cut for part in pieces[1:]])
            await _work_through(rt, state, inputs, [p for pieces in cut for p in pieces], workdir)
            if state.stop is not None:
                return await _stopped(rt, state), None
            # A segment the GC took between this plan's look and now is made again, once.
            gone = await _missing(rt, wanted)
            if not gone:
                break
            state.ready -= gone
        if sound is not None:
            _check(await sound, "the sound")
            if state.stop is not None:
                return await _stopped(rt, state), None
            if audio_key is not None and not await sound_finished(rt.store, audio_key):
                raise Transient("the proxy's sound was not finished (its lock lapsed)")
            await _sound_done(rt, render)
        await state.check_playable()
        output = workdir.with_suffix(".mp4")
        await _assemble(rt, plan, audio_key, workdir, output)
        return "done", output
    finally:
        if sound is not None and not sound.done():
            sound.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sound
        shutil.rmtree(workdir, ignore_errors=True)


def _plan(inputs: Inputs) -> segments.Plan:
    return segments.plan(
        op_list=inputs.op_list,
        frame=inputs.frame,
        stream=(inputs.source.width, inputs.source.height),
        fps=inputs.source.fps,
        clips={k: (s.duration, s.width, s.height) for k, s in inputs.concat.items()},
        sources=inputs.shas,
        preset=PROXY,
    )


def _claim(rt: Runtime, render: Render, plan: segments.Plan, part: list[segments.Segment]) -> Lock:
    """The claim on the part of a proxy that starts with ``part[0]``."""
    assert render.id is not None
    position = plan.segments.index(part[0])
    return rt.redis.lock(
        redis_keys.part_claim(render.id, render.attempts, position), timeout=PART_CLAIM_S
    )


async def _offer(rt: Runtime, state: _Progress, parts: list[list[segments.Segment]]) -> None:
    """Offer these parts to idle workers (``help_with``); a part nobody takes in time is
    encoded here, so without Redis or an idle worker the proxy is made all the same."""
    render = state.render
    assert render.id is not None
    for part in parts:
        position = state.plan.segments.index(part[0])
        try:
            await rt.redis.enqueue_job(
                "proxy_part",
                render.id,
                render.attempts,
                position,
                len(part),
                _job_id=redis_keys.part_job(render.id, render.attempts, position),
            )
        except (RedisError, OSError) as exc:
            log.warning("proxy %s: part not offered (%s); encoding it here", render.id, exc)
            return


async def _take(claim: Lock) -> bool:
    """Claim a part; without Redis the part is this worker's (it would rather encode a
    segment twice, same key and bytes, than not at all)."""
    try:
        return bool(await claim.acquire(blocking=False))
    except (RedisError, OSError) as exc:
        log.warning("a part was encoded without its claim (%s)", exc)
        return True


async def _work_through(
    rt: Runtime,
    state: _Progress,
    inputs: Inputs,
    parts: list[list[segments.Segment]],
    workdir: Path,
) -> None:
    """Encode each part nobody else has claimed, in timeline order; then wait for the parts
    other workers encode, and take over one whose claim lapsed (its worker died)."""
    while state.stop is None:
        pending = [p for p in parts if any(s.key not in state.ready for s in p)]
        if not pending:
            return
        for part in pending:
            claim = _claim(rt, state.render, state.plan, part)
            if not await _take(claim):
                continue  # another worker encodes it
            state.claims.append(claim)
            try:
                await _collect_stored(rt, state, [part])  # what a helper finished before
                missing = {s.key for s in part} - state.ready
                for run in state.plan.runs(missing, among=part):
                    await _encode_run(rt, state, inputs, run, workdir)
                    if state.stop is None and await _unwanted(rt, state.render):
                        state.stop = "superseded"  # a newer edit came while this run ended
                    if state.stop is not None:
                        return
            finally:
                state.claims.remove(claim)
                with contextlib.suppress(LockError, RedisError, OSError):
                    await claim.release()
        await _collect_stored(rt, state, pending)
        if any(s.key not in state.ready for p in pending for s in p):
            if not await state.heartbeat():
                return
            await asyncio.sleep(TICK_S)


async def _collect_stored(
    rt: Runtime, state: _Progress, parts: list[list[segments.Segment]]
) -> None:
    """Count as ready the segments of these parts another worker has stored."""
    wanted = sorted({s.key for p in parts for s in p} - state.ready)
    if not wanted:
        return
    async with rt.db.read() as session:
        stored = (await session.exec(select(Segment.key).where(col(Segment.key).in_(wanted)))).all()
    state.ready |= set(stored) - await _missing(rt, set(stored))
    await state.check_playable()


async def help_with(rt: Runtime, render: Render, inputs: Inputs, position: int, count: int) -> str:
    """Encode the part of another worker's proxy that starts at ``position`` (an idle
    worker's share of a long proxy). It starts once the proxy's first segment is there, so
    it never delays the start of the preview, and only if no worker has claimed the part."""
    assert render.id is not None
    plan = _plan(inputs)
    part = list(plan.segments[position : position + count])
    if not part:
        return "nothing to do"
    state = _Helping(rt, render, plan, None, set())
    first = keys.segment(plan.segments[0].key)
    deadline = time.monotonic() + HELP_WAIT_S
    while not await asyncio.to_thread(rt.store.exists, first) and time.monotonic() < deadline:
        if not await state.heartbeat():
            return "stopped"
        await asyncio.sleep(TICK_S)
    claim = _claim(rt, render, plan, part)
    try:
        if not await claim.acquire(blocking=False):
            return "taken"
    except (RedisError, OSError):
        return "not taken: Redis did not answer"  # the proxy's own worker encodes it
    state.claims.append(claim)
    workdir = rt.store.scratch(keys.render_temp(render.id, render.attempts, f".part{position}.d"))
    try:
        await _collect_stored(rt, state, [part])
        for run in plan.runs({s.key for s in part} - state.ready, among=part):
            await _encode_run(rt, state, inputs, run, workdir)
            if state.stop is not None:
                return "stopped"
        return "done"
    finally:
        with contextlib.suppress(LockError, RedisError, OSError):
            await claim.release()
        shutil.rmtree(workdir, ignore_errors=True)


async def _reuse(rt: Runtime, donor: Render, audio_key: str | None, workdir: Path) -> Path | None:
    """The donor's MP4 linked into temp/ when it and the sound (the same content, so the
    same folder) are whole; None otherwise (then the proxy is made, from its stored
    segments)."""
    if donor.output_key is None:
        return None
    if audio_key is not None and not await sound_finished(rt.store, audio_key):
        return None
    try:
        kept = await asyncio.to_thread(rt.store.local, donor.output_key)
    except FileNotFoundError:
        return None
    output = workdir.with_suffix(".mp4")
    await asyncio.to_thread(link_or_copy, kept, output)
    return output


async def _missing(rt: Runtime, wanted: set[str]) -> set[str]:
    """The segment keys among ``wanted`` whose media is not stored."""

    def look() -> set[str]:
        return {k for k in wanted if not rt.store.exists(keys.segment(k))}

    return await asyncio.to_thread(look)


async def _sound_playlist(store: MediaStore, audio_key: str) -> str:
    """A sound's stored playlist so far ("" before it starts)."""
    try:
        data = await asyncio.to_thread(store.read_bytes, f"{audio_key}/{AUDIO_PLAYLIST}")
    except (FileNotFoundError, ValueError):
        return ""
    return data.decode(errors="replace")


async def sound_finished(store: MediaStore, audio_key: str) -> bool:
    """Whether a sound's folder holds the whole sound (its stored playlist is ended)."""
    return "#EXT-X-ENDLIST" in await _sound_playlist(store, audio_key)


def _folder_finished(folder: Path) -> bool:
    try:
        return "#EXT-X-ENDLIST" in (folder / AUDIO_PLAYLIST).read_text()
    except OSError:
        return False


def _sound_argv(inputs: Inputs, folder: Path) -> tuple[list[str], float]:
    """The ffmpeg that makes a version's sound as HLS in ``folder``, and its length."""
    return edl.audio_argv(
        op_list=inputs.op_list,
        source=inputs.source,
        source_frame=inputs.frame,
        concat_sources=inputs.concat,
        preset=PROXY,
        playlist=folder / AUDIO_PLAYLIST,
        segment_s=edl.SEGMENT_S,
    )


def sound_key(inputs: Inputs) -> str:
    """The content key of a version's sound: the command that makes it, with each source
    named by its file's name (its SHA-256 and recipe) instead of its path. Versions whose
    ops leave the sound alone (a blur, a text, a revert) get the same key, so the same
    stored sound."""
    argv, _ = _sound_argv(inputs, Path("/sound"))
    # A 480p copy's name holds its source's SHA-256 and how it was made; its folder does not
    # matter (another media root, another worker's cache).
    sources = [inputs.source, *inputs.concat.values()]
    names = {f"file:{s.path}": f"file:{s.path.name}" for s in sources}
    named = [names.get(a, a) for a in argv]
    if any(path in a for a in named for path in names):
        raise AssertionError("a source path is left in the sound's key")
    return hashlib.sha256("\0".join([SOUND_RENDERER, *named]).encode()).hexdigest()


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link costs no bytes; across filesystems, copy."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


async def _stopped(rt: Runtime, state: _Progress) -> str:
    """End a stopped attempt: a sound it was making is finished first (it is shared by
    content: another proxy may be playing it); its segments stay in the cache."""
    if state.sound is not None:
        with contextlib.suppress(Exception):
            await state.sound
    if state.stop == "superseded":
        async with rt.db.read() as session:
            project = await session.get(Project, state.render.project_id)
        current = project.current_version if project else state.render.version
        await lifecycle.supersede(
            db=rt.db, announce=rt.events.publish, render=state.render, current=current
        )
        return "superseded"
    return "cancelled"  # announced by the cancel itself


async def _record_plan(
    rt: Runtime, render: Render, plan: segments.Plan, audio_key: str | None
) -> set[str]:
    """Write the render's playlist (position → segment key) and mark its segments used;
    the keys whose segment is already stored."""
    assert render.id is not None
    keys_wanted = sorted({s.key for s in plan.segments})
    now = utcnow()
    async with rt.db.write() as session:
        await session.exec(delete(PlanSegment).where(col(PlanSegment.render_id) == render.id))
        await session.exec(delete(ProxyPlan).where(col(ProxyPlan.render_id) == render.id))
        if audio_key is not None:
            # The GC removes an unused sound under the same lock: it counts this plan or
            # finds the folder gone (then the sound is made again).
            await rt.db.hold(session, keys.sound_in_use(audio_key))
        session.add(ProxyPlan(render_id=render.id, total=len(plan.segments), audio_key=audio_key))
        for position, segment in enumerate(plan.segments):
            session.add(
                PlanSegment(render_id=render.id, position=position, segment_key=segment.key)
            )
        stored: set[str] = set()
        for at in range(0, len(keys_wanted), 500):
            chunk = keys_wanted[at : at + 500]
            await session.exec(
                update(Segment).where(col(Segment.key).in_(chunk)).values(used_at=now)
            )
            stored |= set(
                (await session.exec(select(Segment.key).where(col(Segment.key).in_(chunk)))).all()
            )
    # A row whose file is gone (a crash between the two) is made again.
    return set(stored) - await _missing(rt, stored)


async def _sound_done(rt: Runtime, render: Render) -> None:
    async with rt.db.write() as session:
        await session.exec(
            update(ProxyPlan).where(col(ProxyPlan.render_id) == render.id).values(audio_done=True)
        )


def _check(outcome: Outcome, what: str) -> None:
    """Raise the error an ffmpeg run that did not finish stands for (cancel excepted)."""
    if outcome.cancelled or outcome.returncode == 0:
        return
    if outcome.limit is not None:
        raise Permanent(outcome.limit)
    if outcome.returncode < 0:
        raise Transient(f"ffmpeg was stopped by signal {-outcome.returncode}")
    if out_of_space(outcome.stderr):
        raise StorageFull
    detail = outcome.stderr.strip().splitlines()[-1] if outcome.stderr.strip() else ""
    raise Permanent(f"ffmpeg could not render {what}: {detail}".strip())


async def _ffmpeg(
    rt: Runtime, argv: list[str], seconds: float, on_progress: Callable[[float], Awaitable[bool]]
) -> Outcome:
    """One ffmpeg of a proxy, under the worker's limits, looked at every ``TICK_S``."""
    return await run_ffmpeg(
        argv,
        expected_duration=seconds,
        timeout_s=rt.config.render_timeout_s,
        timeout_per_s=rt.config.render_timeout_per_s,
        max_memory_mb=rt.config.render_max_memory_mb,
        on_progress=on_progress,
        tick_s=TICK_S,
    )


async def _make_sound(rt: Runtime, state: _Progress, inputs: Inputs, key: str) -> Outcome:
    """The whole timeline's sound, once per content key, as HLS segments a player reads
    while they come. One worker makes a key's sound at a time (a Redis lock it renews while
    ffmpeg runs); another render of it waits, then finds it whole. A sound is finished
    even when the attempt that began it stops (other proxies may be playing it already);
    one that fails is removed by its maker, so a half-made folder is never taken as whole."""
    folder = rt.store.folder(key)
    argv, duration = _sound_argv(inputs, folder)
    lock = rt.redis.lock(
        redis_keys.sound_lock(folder.name),
        timeout=SOUND_LOCK_S,
        blocking_timeout=timeout_for(
            rt.config.render_timeout_s, rt.config.render_timeout_per_s, duration
        ),
    )
    try:
        held: bool | None = bool(await lock.acquire())
    except (RedisError, OSError) as exc:
        log.warning("proxy %s: its sound is made without the lock (%s)", state.render.id, exc)
        held = None
    if held is False:
        raise Transient("another worker is still making this proxy's sound")
    began = lost = False
    try:
        if await sound_finished(rt.store, key):
            return Outcome(returncode=0, stderr="")
        # Here, not in a thread: a thread would go on after a cancel.
        began = True
        await asyncio.to_thread(rt.store.remove_folder, key)  # an earlier attempt's half
        folder = rt.store.folder(key)
        if rt.sound_begun is not None:
            await rt.sound_begun(folder.name)
        renewed = time.monotonic()

        async def going(_: float) -> bool:
            nonlocal renewed, lost
            if held and time.monotonic() - renewed > SOUND_LOCK_S / 3:
                renewed = time.monotonic()
                try:
                    await lock.reacquire()
                except LockError:
                    # It lapsed, and another worker may be making this sound now: it alone.
                    lost = True
                    return False
                except (RedisError, OSError) as exc:
                    log.warning("proxy %s: sound lock not renewed (%s)", state.render.id, exc)
            await asyncio.to_thread(rt.store.sync_folder, folder, key)
            await state.check_playable()
            return True

        made = await _ffmpeg(rt, argv, duration, going)
        if made.returncode == 0 and _folder_finished(folder):
            await asyncio.to_thread(rt.store.sync_folder, folder, key)
            await asyncio.to_thread(rt.store.release_folder, folder, key)
        return made
    finally:
        if began and not lost and not await sound_finished(rt.store, key):
            await asyncio.to_thread(rt.store.remove_folder, key)
        if held:
            with contextlib.suppress(LockError, RedisError, OSError):
                await lock.release()


async def _encode_run(
    rt: Runtime, state: _Progress, inputs: Inputs, run: list[segments.Segment], workdir: Path
) -> None:
    """Encode consecutive segments of one piece with one ffmpeg, storing each as it closes."""
    plan = state.plan
    piece = plan.pieces[run[0].piece]
    folder = workdir / f"run-{run[0].first}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    listing = folder / "closed.csv"
    text_files: dict[Path, str] = {}
    argv = run_argv(
        plan=plan,
        run=run,
        source=inputs.source_of(piece),
        preset=PROXY,
        folder=folder,
        listing=listing,
        text_files=text_files,
    )
    for path, text in text_files.items():
        path.write_text(text)
    stored = 0

    async def collect() -> None:
        nonlocal stored
        for name in _closed(listing)[stored:]:
            if stored >= len(run):
                raise Permanent("the segment encoder wrote more segments than planned")
            await _store_segment(rt, folder / name, run[stored], state.render.id)
            state.ready.add(run[stored].key)
            stored += 1
            if rt.segment_stored is not None:
                await rt.segment_stored(run[stored - 1].key)
            await state.check_playable()

    async def tick(fraction: float) -> bool:
        await collect()
        return await state.heartbeat(fraction, len(run))

    length = sum(s.frames for s in run) / float(plan.rate)
    outcome = await _ffmpeg(rt, argv, length, tick)
    if outcome.cancelled:
        if state.stop is None:
            state.stop = "cancelled"
        return
    _check(outcome, "this edit")
    await collect()
    if stored != len(run):
        raise Permanent(f"the segment encoder wrote {stored} of {len(run)} segments")


def _closed(listing: Path) -> list[str]:
    """Segment files ffmpeg has closed, in order (its segment list, one row each)."""
    try:
        with listing.open(newline="") as fh:
            return [row[0] for row in csv.reader(fh) if row]
    except FileNotFoundError:
        return []


async def _store_segment(
    rt: Runtime, path: Path, segment: segments.Segment, render_id: int | None
) -> None:
    """Keep one closed segment under its content key: its init once per SHA-256, its media
    section once per key. Written aside and renamed, so a reader never sees half a file.
    Storing the same segment twice changes nothing (a tick cut short stores it again)."""
    data = await asyncio.to_thread(path.read_bytes)
    init, media = fmp4.split(data)
    frames, ticks = fmp4.duration(media)
    if frames != segment.frames:
        log.warning(
            "segment %s: %d frames planned, %d encoded", segment.key[:12], segment.frames, frames
        )
    init_sha = hashlib.sha256(init).hexdigest()
    await asyncio.to_thread(rt.store.write_bytes, keys.segment_init(init_sha), init, replace=False)
    await asyncio.to_thread(rt.store.write_bytes, keys.segment(segment.key), media, replace=False)
    dialect = sqlite if rt.db.is_sqlite else postgresql
    async with rt.db.write() as session:
        # Two workers may store the same key (a lapsed claim, a clip appended twice): the
        # first row stays.
        await session.exec(
            dialect.insert(Segment)
            .values(
                key=segment.key,
                init_sha256=init_sha,
                frames=frames,
                ticks=ticks,
                timescale=fmp4.timescale(init),
                bytes=len(media),
                render_id=render_id,
                used_at=utcnow(),
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=[Segment.key])
        )


def run_argv(
    *,
    plan: segments.Plan,
    run: list[segments.Segment],
    source: edl.Source,
    preset: Preset,
    folder: Path,
    listing: Path,
    text_files: dict[Path, str],
) -> list[str]:
    """One ffmpeg for consecutive segments of one piece: frames ``[first, last)`` of the
    piece's source grid, the piece's ops with times relative to the first frame, encoded
    with a keyframe at each segment start and cut into one fragmented MP4 per segment."""
    piece = plan.pieces[run[0].piece]
    first, last = run[0].first, run[-1].last
    rate = plan.rate
    start_s = float(first / rate) * piece.speed  # source seconds of the first frame
    # Half a source frame of margin: the frame shown at the first instant is kept.
    margin = 0.5 / max(1.0, source.fps or float(edl.FALLBACK_FPS))
    stream = fg.file_input(
        f"file:{source.path}",
        f=source.demuxer,
        ss=edl.number(max(0.0, start_s - margin)),
        protocol_whitelist="file,pipe",
        format_whitelist=DEMUXERS,
    )
    video = stream.video.filter("setsar", 1)
    video = video.filter("trim", start=edl.number(max(0.0, start_s - margin)))
    # Each output frame shows the latest source frame at or before its instant (as a player
    # would): times are nudged down a hair and rounded up to the frame grid, so a source
    # frame exactly on an instant takes it, and one just after waits for the next.
    nudge = edl.number(round(1 / (1000 * float(rate)), 9))
    video = video.filter(
        "setpts", f"((T-{edl.number(start_s)})/{edl.number(piece.speed)}-{nudge})/TB"
    )
    video = video.filter("fps", fps=str(rate), start_time=0, round="up")
    video = video.filter("trim", end_frame=last - first)
    if piece.fit is not None:
        video = edl.fit(video, *piece.fit)
    steps = segments.steps_within(piece, first, last, rate)
    # Times before the first frame (a fade that began earlier) are moved into view: every
    # time is shifted by the same amount while the ops run, and back afterwards.
    shift = max([0.0] + [-s.span[0] for s in steps if s.span is not None])
    if shift > 0:
        video = video.filter("setpts", f"PTS+{edl.number(shift)}/TB")
    length = float((last - first) / rate)
    for index, step in enumerate(steps):
        video = _step(step, index, video, length, shift, folder, text_files)
    if shift > 0:
        video = video.filter("setpts", "PTS-STARTPTS")
    video = edl.fit_to_preset(
        video, preset, small=edl.too_small_size(plan.look.width, plan.look.height, preset)
    )
    cuts = []
    at = 0
    for segment in run[:-1]:
        at += segment.frames
        cuts.append(str(at))
    starts = "+".join(f"eq(n,{c})" for c in ["0", *cuts])
    options: dict[str, Any] = {
        **VIDEO_CODEC,
        "preset": preset.x264_preset,
        "threads": edl.ENCODER_THREADS,
        "g": plan.per_segment,
        "force_key_frames": f"expr:{starts}" if len(cuts) < 50 else _every(first, plan),
        "f": "segment",
        "segment_format": "mp4",
        "segment_format_options": "movflags=+frag_keyframe+empty_moov+default_base_moof",
        "segment_list": str(listing),
        "segment_list_type": "csv",
        "reset_timestamps": 1,
    }
    if cuts:
        options["segment_frames"] = ",".join(cuts)
    if preset.video_bitrate:
        options.update(
            {"b:v": preset.video_bitrate, "maxrate": preset.video_bitrate},
            bufsize=preset.video_bitrate,
        )
    if preset.crf is not None:
        options["crf"] = preset.crf
    # -copyts: the filters see the source's own times (the seek does not restart them at 0).
    out = fg.Output([video], str(folder / "%05d.mp4"), options, [*edl.GLOBAL_ARGS, "-copyts"])
    argv = fg.compile_argv(out)
    return edl.graph_in_file(argv, folder, text_files)


def _every(first: int, plan: segments.Plan) -> str:
    """Keyframes at every segment start of a long run: frame ``first + n`` on the grid."""
    return f"expr:eq(n,0)+eq(mod(n+{first},{plan.per_segment}),0)"


def _step(
    step: segments.Step,
    index: int,
    video: fg.Stream,
    length: float,
    shift: float,
    folder: Path,
    text_files: dict[Path, str],
) -> fg.Stream:
    """One op of a piece, its span (relative to the run's first frame) moved by ``shift``."""
    look = step.look
    state = edl.state_for(look.width, look.height, look.sx, look.sy, length + shift)
    op = step.op
    if isinstance(op, ops.Fade):
        assert step.span is not None
        kind = "in" if op.in_seconds > 0 else "out"
        return video.filter(
            "fade",
            type=kind,
            start_time=edl.number(round(step.span[0] + shift, 6)),
            duration=edl.number(round(step.span[1] - step.span[0], 6)),
        )
    if step.span is not None:
        lo, hi = max(0.0, step.span[0]) + shift, step.span[1] + shift
        op = op.model_copy(update={"start": round(lo, 6), "end": round(hi, 6)})
    elif isinstance(op, ops.Text):
        op = op.model_copy(update={"start": 0.0, "end": None})
    return edl.apply_video(op, index, video, state, folder, text_files)


async def _assemble(
    rt: Runtime, plan: segments.Plan, audio_key: str | None, workdir: Path, output: Path
) -> None:
    """The seed's MP4 from the stored segments and the sound: bytes laid end to end with
    their decode times set, then one remux (no re-encode) with the index up front."""
    async with rt.db.read() as session:
        rows = {
            s.key: s
            for s in (
                await session.exec(
                    select(Segment).where(
                        col(Segment.key).in_(sorted({x.key for x in plan.segments}))
                    )
                )
            ).all()
        }
    picture = workdir / "picture.mp4"
    inits = {rows[s.key].init_sha256 for s in plan.segments}
    if len(inits) != 1:
        raise Permanent("the segments of this proxy were encoded with different settings")

    def write_picture() -> None:
        with picture.open("wb") as out:
            out.write(rt.store.read_bytes(keys.segment_init(inits.pop())))
            at = 0
            for segment in plan.segments:
                media = rt.store.read_bytes(keys.segment(segment.key))
                out.write(fmp4.placed(media, at))
                at += rows[segment.key].ticks

    await asyncio.to_thread(write_picture)
    argv = ["ffmpeg", *edl.GLOBAL_ARGS, "-i", f"file:{picture}"]
    maps = ["-map", "0:v"]
    if audio_key is not None:
        sound = workdir / "sound.mp4"
        try:
            folder = await asyncio.to_thread(rt.store.local_folder, audio_key)
            await asyncio.to_thread(_join_sound, folder, sound)
        except FileNotFoundError as exc:
            # The GC took a sound nothing used a moment before this render listed it.
            raise Transient("the proxy's sound was removed while it was made") from exc
        argv += ["-i", f"file:{sound}"]
        maps += ["-map", "1:a"]
    argv += [*maps, "-c", "copy", "-movflags", "+faststart", "-f", "mp4", str(output), "-y"]

    async def going(_: float) -> bool:
        return True

    _check(
        await run_ffmpeg(
            argv,
            expected_duration=0,
            timeout_s=rt.config.render_timeout_s,
            on_progress=going,
            max_memory_mb=rt.config.render_max_memory_mb,
        ),
        "the proxy file",
    )


def _join_sound(folder: Path, target: Path) -> None:
    """The sound's HLS segments as one fragmented MP4: its init, then each segment."""
    names = [
        line.strip()
        for line in (folder / AUDIO_PLAYLIST).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    with target.open("wb") as out:
        out.write((folder / "init.mp4").read_bytes())
        for name in names:
            out.write((folder / name).read_bytes())

"""Render jobs: the mezzanine of a source, and the proxy or export of a version."""

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from arq import Retry
from sqlmodel import col, select

from jobs import edl, proxy
from jobs.errors import Permanent, StorageFull, Transient, out_of_space
from jobs.mezzanine import ensure_mezzanine, original, source_of
from jobs.runner import run_ffmpeg
from jobs.runtime import Runtime
from models import keys
from models.states import RenderKind, RenderStatus
from models.store import is_storage_full
from models.tables import Blob, Project, Render, Version, Video
from resolvers import lifecycle, ops, renders, versions
from resolvers.presets import PROXY, Preset
from resolvers.probe import probe

log = logging.getLogger(__name__)


def _runtime(ctx: dict[str, Any]) -> Runtime:
    runtime: Runtime = ctx["runtime"]
    return runtime


async def render(ctx: dict[str, Any], render_id: int) -> str:
    """Produce one render's file. Safe to run twice: a finished or claimed render is skipped."""
    rt = _runtime(ctx)
    claimed = await lifecycle.claim(
        db=rt.db, announce=rt.events.publish, render_id=render_id, lease_s=rt.config.render_lease_s
    )
    if claimed is None:
        return "skipped"
    # The lease is renewed for the whole attempt, also while it waits for the 480p copy.
    keeper = asyncio.create_task(_keep_lease(rt, claimed))
    try:
        return await _produce(rt, claimed)
    except StorageFull as exc:
        raise await _wait_for_space(rt, claimed, ctx, exc) from exc
    except Transient as exc:
        if claimed.attempts < rt.config.render_max_attempts:
            await _release(rt, claimed, f"retrying: {exc}")
            raise Retry(defer=2**claimed.attempts) from exc
        await _fail(rt, claimed, f"{exc} (gave up after {claimed.attempts} attempts)")
        return "failed"
    except Permanent as exc:
        await _fail(rt, claimed, str(exc))
        return "failed"
    except Exception as exc:
        if is_storage_full(exc):
            raise await _wait_for_space(rt, claimed, ctx, StorageFull()) from exc
        # A bug or an outage (database, disk): never leave the render RUNNING.
        log.exception("render %s stopped unexpectedly", render_id)
        if claimed.attempts < rt.config.render_max_attempts:
            await _release(rt, claimed, "retrying after an internal error")
            raise Retry(defer=2**claimed.attempts) from None
        await _fail(rt, claimed, "an internal error stopped the render; see the worker log")
        return "failed"
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper


async def _keep_lease(rt: Runtime, render: Render) -> None:
    while True:
        await asyncio.sleep(rt.config.render_lease_s / 3)
        await lifecycle.renew(db=rt.db, render=render, lease_s=rt.config.render_lease_s)


async def _produce(rt: Runtime, render: Render) -> str:
    assert render.id is not None
    async with rt.db.read() as session:
        project = await session.get(Project, render.project_id)
        assert project is not None
        unwanted = render.version != project.current_version and not render.on_demand
        if render.kind == RenderKind.PROXY and unwanted:
            await lifecycle.supersede(
                db=rt.db,
                announce=rt.events.publish,
                render=render,
                current=project.current_version,
            )
            return "superseded"
        version = (
            await session.exec(
                select(Version).where(
                    Version.project_id == render.project_id, Version.number == render.version
                )
            )
        ).one()
        effective = await versions.effective_in(session, render.project_id, render.version)
        video = await session.get(Video, project.source_video_id)
        assert video is not None
        blob = await session.get(Blob, video.blob_id)
        assert blob is not None
        donor = (
            await session.exec(
                select(Render).where(
                    Render.content_key == render.content_key,
                    Render.status == RenderStatus.DONE,
                    col(Render.id) != render.id,
                )
            )
        ).first()
        op_list = [ops.VOCABULARY[r.type].model_validate(r.params) for r in effective]
        others = await _concat_rows(session, op_list)
    final_key = renders.output_key(render.kind, render.project_id, render.version)
    temp = rt.store.scratch(keys.render_temp(render.id, render.attempts, ".mp4"))
    for stale in temp.parent.glob(keys.render_temp_prefix(render.id) + "*"):
        # Left by an attempt whose worker died mid-render.
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    temp.parent.mkdir(parents=True, exist_ok=True)
    try:
        if render.kind == RenderKind.PROXY:
            inputs = await _proxy_inputs(rt, video, blob, op_list, others)
            outcome, made = await proxy.produce(rt, render, inputs, donor)
            if outcome != "done":
                return outcome
            assert made is not None
            os.replace(made, temp)
        elif donor is not None and donor.output_key and await _has(rt, donor.output_key):
            # Same source, same effective ops, same preset: the file already exists.
            kept = await asyncio.to_thread(rt.store.local, donor.output_key)
            proxy.link_or_copy(kept, temp)
        else:
            outcome = await _run(
                rt, render, rt.config.export, video, blob, version, op_list, others, temp
            )
            if outcome != "done":
                return outcome
        facts = await probe(temp)
        size = temp.stat().st_size
        # A file already under the final key is this version's, from an attempt that
        # stopped before recording it: it stays, so no late attempt overwrites a good file.
        await asyncio.to_thread(rt.store.publish, temp, final_key, replace=False)
        stored = await asyncio.to_thread(rt.store.size, final_key)
        size = stored if stored is not None else size
    finally:
        temp.unlink(missing_ok=True)
    outcome = await lifecycle.done(
        db=rt.db,
        announce=rt.events.publish,
        render=render,
        output_key=final_key,
        size=size,
        facts=facts,
    )
    if outcome == "cancelled":
        # Cancelled while the file was moved into place: a cancelled render has no file.
        await asyncio.to_thread(rt.store.remove, final_key)
    return outcome


async def _run(
    rt: Runtime,
    render: Render,
    preset: Preset,
    video: Video,
    blob: Blob,
    version: Version,
    op_list: list[ops.Op],
    others: dict[int, tuple[Video, Blob]],
    temp: Path,
) -> str:
    source = await _source(rt, video, blob, preset)
    concat = {k: await _source(rt, v, b, preset) for k, (v, b) in others.items()}
    workdir = rt.store.scratch(keys.render_temp(render.id or 0, render.attempts, ".d"))
    workdir.mkdir(parents=True, exist_ok=True)
    plan = edl.compile_edl(
        op_list=op_list,
        source=source,
        source_frame=ops.Frame(video.width, video.height, video.duration),
        concat_sources=concat,
        preset=preset,
        output=temp,
        workdir=workdir,
    )
    for path, text in plan.text_files.items():
        path.write_text(text)

    async def on_progress(fraction: float) -> bool:
        return await _heartbeat(rt, render, fraction)

    try:
        outcome = await run_ffmpeg(
            plan.argv,
            expected_duration=plan.duration,
            timeout_s=rt.config.render_timeout_s,
            timeout_per_s=rt.config.render_timeout_per_s,
            max_memory_mb=rt.config.render_max_memory_mb,
            on_progress=on_progress,
        )
    finally:
        for path in plan.text_files:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            workdir.rmdir()
    if outcome.cancelled:
        return "cancelled"  # announced by the cancel itself
    if outcome.limit is not None:  # the timeout too: it names its settings
        raise Permanent(outcome.limit)  # the same edit would hit the same limit again
    if outcome.returncode < 0:
        raise Transient(f"ffmpeg was stopped by signal {-outcome.returncode}")
    if outcome.returncode != 0 and out_of_space(outcome.stderr):
        raise StorageFull
    if outcome.returncode != 0:
        detail = outcome.stderr.strip().splitlines()[-1] if outcome.stderr.strip() else ""
        raise Permanent(f"ffmpeg could not render this edit: {detail}".strip())
    return "done"


async def proxy_part(
    ctx: dict[str, Any], render_id: int, attempt: int, position: int, count: int
) -> str:
    """An idle worker's share of a long proxy another worker is making: the part of its
    segments from ``position`` (``jobs.proxy.help_with``). A part that finds the attempt
    over, or the part taken, does nothing."""
    rt = _runtime(ctx)
    async with rt.db.read() as session:
        render = await session.get(Render, render_id)
        if render is None or render.status != RenderStatus.RUNNING or render.attempts != attempt:
            return "skipped"
        project = await session.get(Project, render.project_id)
        assert project is not None
        effective = await versions.effective_in(session, render.project_id, render.version)
        video = await session.get(Video, project.source_video_id)
        assert video is not None
        blob = await session.get(Blob, video.blob_id)
        assert blob is not None
        op_list = [ops.VOCABULARY[r.type].model_validate(r.params) for r in effective]
        others = await _concat_rows(session, op_list)
    inputs = await _proxy_inputs(rt, video, blob, op_list, others)
    try:
        return await proxy.help_with(rt, render, inputs, position, count)
    except Exception:
        # The proxy's own worker encodes what its helper did not.
        log.exception("proxy %s: the part from segment %s stopped", render_id, position)
        return "failed"


async def _proxy_inputs(
    rt: Runtime,
    video: Video,
    blob: Blob,
    op_list: list[ops.Op],
    others: dict[int, tuple[Video, Blob]],
) -> proxy.Inputs:
    return proxy.Inputs(
        source=await _source(rt, video, blob, PROXY),
        concat={k: await _source(rt, v, b, PROXY) for k, (v, b) in others.items()},
        shas={0: blob.sha256, **{k: b.sha256 for k, (_, b) in others.items()}},
        frame=ops.Frame(video.width, video.height, video.duration),
        op_list=op_list,
    )


async def _source(rt: Runtime, video: Video, blob: Blob, preset: Preset) -> edl.Source:
    if not preset.from_mezzanine:
        return await original(rt, video, blob)
    width, height = edl.mezzanine_size(video.width, video.height)
    path = await ensure_mezzanine(rt, video, blob)
    return dataclasses.replace(
        source_of(video, path), demuxer="mov", width=width, height=height
    )


async def _has(rt: Runtime, key: str) -> bool:
    return await asyncio.to_thread(rt.store.exists, key)


async def _concat_rows(session: Any, op_list: list[ops.Op]) -> dict[int, tuple[Video, Blob]]:
    found: dict[int, tuple[Video, Blob]] = {}
    for op in op_list:
        if isinstance(op, ops.Concat) and op.video_id not in found:
            video = await session.get(Video, op.video_id)
            if video is None:
                raise Permanent("a video this edit appends no longer exists")
            blob = await session.get(Blob, video.blob_id)
            found[op.video_id] = (video, blob)
    return found


async def _heartbeat(rt: Runtime, render: Render, fraction: float) -> bool:
    """Store progress and extend the lease; False once the render was cancelled."""
    return await lifecycle.progress(
        db=rt.db,
        announce=rt.events.publish,
        render=render,
        fraction=fraction,
        lease_s=rt.config.render_lease_s,
    )


async def _release(rt: Runtime, render: Render, note: str) -> None:
    await lifecycle.release(db=rt.db, announce=rt.events.publish, render=render, note=note)


async def _wait_for_space(
    rt: Runtime, render: Render, ctx: dict[str, Any], exc: StorageFull
) -> Retry:
    """A full disk is nobody's fault and passes: give the attempt back and try again later,
    every reconcile at the latest once arq's own retries run out."""
    log.warning("render %s: %s", render.id, exc)
    await lifecycle.release(
        db=rt.db, announce=rt.events.publish, render=render, note=str(exc), refund=True
    )
    return Retry(defer=min(30, 2 ** int(ctx.get("job_try", 1))))


async def _fail(rt: Runtime, render: Render, reason: str) -> None:
    await lifecycle.fail(db=rt.db, announce=rt.events.publish, render=render, reason=reason)

"""Proxies of old versions are derived data: an admin-confirmed gcDelete takes their files
back, the current and latest proxies stay, and asking for one again renders it again."""

import os
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import col, select

from jobs.proxy import AUDIO_PLAYLIST
from jobs.queue import ArqQueue
from models.db import Database
from models.states import RenderStatus
from models.store import MediaStore
from models.tables import Project, Render, utcnow
from resolvers import gc, gc_policy, renders, versions
from resolvers.gc_segments import ORPHAN_GRACE_S
from resolvers.users import Actor
from tests.helpers import measure
from tests.helpers.api import Api
from tests.helpers.api import new_project as new_project_over_api
from tests.helpers.domain import BLUR, new_project
from tests.helpers.render_job import append, output_of, rendered, runtime, sound_of

QUIETER = {"type": "volume", "params": {"gain_db": -6}}


async def proxies_of(db: Database, project_id: int) -> dict[int, Render]:
    async with db.read() as s:
        rows = (
            await s.exec(
                select(Render).where(Render.project_id == project_id, Render.kind == "proxy")
            )
        ).all()
    return {r.version: r for r in rows}


async def three_rendered_proxies(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, source: Path
) -> tuple[int, dict[int, Path]]:
    """A project at version 2 whose proxies v0..v2 rendered for real, 40 days ago. Version
    1 turns the sound down; version 2 blurs, so it shares version 1's sound."""
    project = await new_project(db, queue, store, alice, source)
    assert project.id is not None
    rt = runtime(db, queue, store)
    files = {0: await output_of(rt, (await proxies_of(db, project.id))[0])}
    for n, op in ((1, QUIETER), (2, BLUR)):
        await versions.append_ops(
            db=db,
            queue=queue,
            actor=alice,
            project_id=project.id,
            raw_ops=[op],
            expected_version=None,
        )
        files[n] = await output_of(rt, (await proxies_of(db, project.id))[n])
    async with db.write() as s:
        await s.exec(
            update(Render)
            .where(col(Render.project_id) == project.id)
            .values(created_at=utcnow() - timedelta(days=40))
        )
    return project.id, files


async def test_gc_delete_takes_back_old_proxies_and_keeps_the_current_one(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project_id, files = await three_rendered_proxies(db, queue, store, alice, media["clip"])
    sizes = {n: f.stat().st_size for n, f in files.items()}
    # Each sound is stored once, as HLS: versions 1 and 2 share one. It goes with the last
    # proxy that uses it.
    rt = runtime(db, queue, store)
    proxies = await proxies_of(db, project_id)
    sound = {n: await sound_of(rt, proxies[n]) for n in files}
    assert sound[0] != sound[1] == sound[2]
    sound_bytes = {n: sum(p.stat().st_size for p in sound[n].iterdir()) for n in (0, 1)}
    assert all(sound_bytes.values())
    assert await gc_policy.stale_proxies(db=db, days_old=30) == (2, sizes[0] + sizes[1])
    assert await gc_policy.stale_proxies(db=db, days_old=60) == (0, 0)
    # Younger than the setting: kept.
    outcome = await gc.delete(
        db=db, store=store, actor=None, days_in_archive=30, proxy_days_old=60, confirm=True
    )
    assert outcome.tally.proxies_reclaimed == 0 and all(f.exists() for f in files.values())
    outcome = await gc.delete(
        db=db, store=store, actor=None, days_in_archive=30, proxy_days_old=30, confirm=True
    )
    assert outcome.tally.proxies_reclaimed == 2
    assert outcome.bytes_freed == sizes[0] + sizes[1] + sound_bytes[0]
    assert not files[0].exists() and not files[1].exists() and files[2].exists()
    assert not sound[0].exists()
    assert sum(p.stat().st_size for p in sound[2].iterdir()) == sound_bytes[1]
    proxies = await proxies_of(db, project_id)
    assert [proxies[n].status for n in (0, 1, 2)] == [
        RenderStatus.RECLAIMED,
        RenderStatus.RECLAIMED,
        RenderStatus.DONE,
    ]
    assert proxies[0].output_key is None and proxies[2].output_key is not None
    async with db.read() as s:
        project = await s.get(Project, project_id)
    assert project is not None and project.latest_proxy_id == proxies[2].id
    assert await gc_policy.stale_proxies(db=db, days_old=30) == (0, 0)


async def test_a_reclaimed_proxy_renders_again_when_asked_for(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project_id, _ = await three_rendered_proxies(db, queue, store, alice, media["clip"])
    await gc.delete(db=db, store=store, actor=None, days_in_archive=30, confirm=True)
    again = await renders.request_proxy(
        db=db, queue=queue, actor=alice, project_id=project_id, version=0
    )
    assert again.status == RenderStatus.QUEUED
    # Version 0 is long past, but it was asked for by name: it renders, not superseded.
    path = await output_of(runtime(db, queue, store), again)
    assert abs(measure.duration(path) - 2.0) < 0.1
    assert (await proxies_of(db, project_id))[0].status == RenderStatus.DONE
    # A proxy that is there is answered as it is.
    same = await renders.request_proxy(
        db=db, queue=queue, actor=alice, project_id=project_id, version=0
    )
    assert (same.id, same.status) == (again.id, RenderStatus.DONE)


async def test_a_request_between_the_reclaim_and_its_file_keeps_the_file(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project_id, files = await three_rendered_proxies(db, queue, store, alice, media["clip"])
    rendered_again: list[Path] = []

    async def user_asks(where: str) -> None:
        if where != "proxies recorded" or rendered_again:
            return
        # The reclaim is committed, its file not removed yet: the user asks, and it renders.
        job = await renders.request_proxy(
            db=db, queue=queue, actor=alice, project_id=project_id, version=1
        )
        rendered_again.append(await output_of(runtime(db, queue, store), job))

    await gc.delete(
        db=db, store=store, actor=None, days_in_archive=30, confirm=True, checkpoint=user_asks
    )
    assert rendered_again and rendered_again[0] == files[1]
    # The proxy asked for again keeps its sound; version 0's, which nothing uses, goes.
    proxies = await proxies_of(db, project_id)
    rt = runtime(db, queue, store)
    kept, gone = await sound_of(rt, proxies[1]), await sound_of(rt, proxies[0])
    assert (kept / AUDIO_PLAYLIST).exists() and not gone.exists()
    assert proxies[1].status == RenderStatus.DONE and files[1].exists()
    assert proxies[0].status == RenderStatus.RECLAIMED and not files[0].exists()


async def test_request_proxy_over_the_api(
    api: Api, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    pid = await new_project_over_api(api, tokens["alice"], media["clip"])
    ask = """mutation($p: ID!, $v: Int) { requestProxy(projectId: $p, version: $v) {
               __typename ... on ProxyRequested { render { kind version status } }
               ... on NotFound { message } } }"""
    mine = await api.data(tokens["alice"], ask, {"p": pid, "v": 0})
    assert mine["requestProxy"]["__typename"] == "ProxyRequested"
    assert mine["requestProxy"]["render"]["kind"] == "PROXY"
    for token, variables in (
        (tokens["bob"], {"p": pid, "v": 0}),
        (tokens["alice"], {"p": pid, "v": 7}),
    ):
        refused = await api.data(token, ask, variables)
        assert refused["requestProxy"]["__typename"] == "NotFound"


async def test_gc_delete_sweeps_the_finished_sound_of_a_proxy_that_never_finished(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    project = await new_project(db, queue, store, alice, media["clip"])
    rt = runtime(db, queue, store)
    await output_of(rt, (await proxies_of(db, project.id or 0))[0])
    _, quieter = await append(rt, queue, alice, project, [QUIETER, BLUR])
    louder = {"type": "volume", "params": {"gain_db": 6}}

    async def edit_again(_: str) -> None:
        # Another sound is wanted before the quieter proxy ends: it stops, and its sound,
        # begun already, is finished anyway (another proxy might be playing it).
        rt.segment_stored = None
        await append(rt, queue, alice, project, [louder])

    rt.segment_stored = edit_again
    stopped = await rendered(rt, quieter)
    assert stopped.error == "superseded by version 2"
    orphan = await sound_of(rt, stopped)
    assert (orphan / AUDIO_PLAYLIST).is_file()
    newest = (await proxies_of(db, project.id or 0))[2]
    await output_of(rt, newest)
    kept = [await sound_of(rt, p) for p in (await proxies_of(db, project.id or 0)).values()]
    kept.remove(orphan)
    # All three sounds were written long ago: only the one no proxy uses goes.
    old = time.time() - 2 * ORPHAN_GRACE_S
    for folder in [orphan, *kept]:
        for written in [folder, *folder.iterdir()]:
            os.utime(written, (old, old))
    size = sum(p.stat().st_size for p in orphan.iterdir())
    outcome = await gc.delete(db=db, store=store, actor=None, days_in_archive=30, confirm=True)
    assert not orphan.exists() and all((k / AUDIO_PLAYLIST).is_file() for k in kept)
    assert outcome.bytes_freed == size

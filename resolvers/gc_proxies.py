"""Proxies of old versions are derived data: ``gcDelete`` reclaims their files, and asking
for one again (``requestProxy``) renders it again.

The same two steps as exports: the render is marked RECLAIMED (re-checked under the locks of
its row and its project), then, with the rows locked again, the file goes only if the render
is still RECLAIMED. A request that re-queued it in between keeps it. A reclaimed render whose
file is not gone yet still has its ``output_key``: that is what ``converge`` settles.
"""

import asyncio
import time

from sqlalchemy import func, insert, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import keys
from models.db import Database
from models.states import RenderStatus
from models.store import MediaStore
from models.tables import GcAudit, Project, ProxyPlan, Render, utcnow
from resolvers import lifecycle
from resolvers.gc_files import BATCH, Checkpoint, Freed, no_fault, off_loop, remove
from resolvers.gc_policy import stale_proxy
from resolvers.gc_runs import Tally
from resolvers.gc_segments import ORPHAN_GRACE_S
from resolvers.users import Actor


def _remove_all(store: MediaStore, names: list[str], disk: Freed) -> None:
    for name in names:
        remove(store, name, disk)


def _remove_folder(store: MediaStore, folder_key: str, disk: Freed) -> None:
    """Remove a folder of files (a proxy's sound) and the folder itself."""
    disk.freed += store.remove_folder(folder_key)


# A proxy in one of these states has, or will have, its sound's folder in use.
USING_SOUND = (RenderStatus.QUEUED, RenderStatus.RUNNING, RenderStatus.DONE)


async def _settle(
    db: Database, session: AsyncSession, store: MediaStore, ids: list[int], disk: Freed
) -> None:
    """Remove the files of these renders if they are still RECLAIMED (rows locked), and
    their sound once no other proxy uses it (a sound is shared by every version and project
    whose sound is the same)."""
    conn = await session.connection()
    rows = await conn.execute(
        sa_select(col(Render.id), col(Render.output_key))
        .where(
            col(Render.id).in_(ids),
            col(Render.status) == RenderStatus.RECLAIMED,
            col(Render.output_key).is_not(None),
        )
        .order_by(col(Render.id))
        .with_for_update()
    )
    gone = {i: key for i, key in rows if i is not None and key is not None}
    if not gone:
        return
    await off_loop(_remove_all, store, list(gone.values()), disk)
    await conn.execute(
        update(Render).where(col(Render.id).in_(gone)).values(output_key=None, bytes=None)
    )
    sounds = await conn.execute(
        sa_select(col(ProxyPlan.audio_key))
        .where(col(ProxyPlan.render_id).in_(gone), col(ProxyPlan.audio_key).is_not(None))
        .distinct()
    )
    for sound in sorted(str(key) for (key,) in sounds.all()):
        await _remove_sound_if_unused(db, session, store, sound, disk)


async def _remove_sound_if_unused(
    db: Database, session: AsyncSession, store: MediaStore, sound: str, disk: Freed
) -> bool:
    """Remove a sound's folder if no proxy uses it, deciding under the lock a render takes
    to list it in its plan (``keys.sound_in_use``): the render either is counted here or
    finds the folder gone and makes the sound again."""
    await db.hold(session, keys.sound_in_use(sound))
    conn = await session.connection()
    in_use = await conn.execute(
        sa_select(func.count())
        .select_from(ProxyPlan)
        .join(Render, col(Render.id) == col(ProxyPlan.render_id))
        .where(col(ProxyPlan.audio_key) == sound, col(Render.status).in_(USING_SOUND))
    )
    if in_use.scalar_one():
        return False
    await off_loop(_remove_folder, store, sound, disk)
    return True


async def sweep_sounds(*, db: Database, store: MediaStore) -> int:
    """Remove sounds no proxy uses that nothing has written for ``ORPHAN_GRACE_S``: made by
    proxies that never finished (superseded, cancelled, failed). Returns bytes freed."""
    cutoff = time.time() - ORPHAN_GRACE_S

    def idle() -> list[str]:
        """Sound folders whose newest file is older than the cutoff."""
        newest: dict[str, float] = {}
        for entry in store.listing(keys.SOUNDS):
            parts = entry.key.split("/")
            if len(parts) == 5:  # proxy/sound/{ab}/{key}/{file}
                folder = "/".join(parts[:4])
                newest[folder] = max(newest.get(folder, 0.0), entry.modified)
        return [folder for folder, at in newest.items() if at < cutoff]

    disk = Freed()
    for sound in await asyncio.to_thread(idle):
        async with db.write() as session:
            await _remove_sound_if_unused(db, session, store, sound, disk)
    return disk.freed


async def converge(*, db: Database, store: MediaStore) -> int:
    """Remove the files of reclaimed proxies a crash left on disk; returns bytes freed."""
    disk, after = Freed(), 0
    while True:
        async with db.read() as session:
            ids = [
                i
                for i in (
                    await session.exec(
                        select(Render.id)
                        .where(
                            col(Render.status) == RenderStatus.RECLAIMED,
                            col(Render.output_key).is_not(None),
                            col(Render.id) > after,
                        )
                        .order_by(col(Render.id))
                        .limit(BATCH)
                    )
                ).all()
                if i is not None
            ]
        if not ids:
            return disk.freed
        after = ids[-1]
        async with db.write() as session:
            await _settle(db, session, store, ids, disk)


async def reclaim(
    *,
    db: Database,
    store: MediaStore,
    actor: Actor | None,
    days_old: int,
    tally: Tally,
    checkpoint: Checkpoint = no_fault,
) -> int:
    """Reclaim the files of proxies of old versions (``gc_policy.stale_proxy``); returns how
    many. Their bytes freed are added to ``tally``."""
    tally.bytes_freed += await converge(db=db, store=store)
    tally.bytes_freed += await sweep_sounds(db=db, store=store)
    reclaimed, after = 0, 0
    while True:
        async with db.read() as session:
            ids = [
                i
                for i in (
                    await session.exec(
                        select(Render.id)
                        .join(Project, col(Project.id) == col(Render.project_id))
                        .where(stale_proxy(days_old), col(Render.id) > after)
                        .order_by(col(Render.id))
                        .limit(BATCH)
                    )
                ).all()
                if i is not None
            ]
        if not ids:
            return reclaimed
        after = ids[-1]
        taken: list[int] = []
        now, actor_id = utcnow(), actor.id if actor else None
        async with db.write() as session:
            rows = await session.exec(
                select(Render)
                .join(Project, col(Project.id) == col(Render.project_id))
                .where(col(Render.id).in_(ids), stale_proxy(days_old))
                .order_by(col(Render.id))
                .with_for_update(of=[Render, Project])
            )
            audit = []
            for render in rows.all():
                await lifecycle.reclaim(session, render)
                audit.append(
                    {
                        "at": now,
                        "actor_id": actor_id,
                        "action": "reclaim-proxy",
                        "bytes": render.bytes or 0,
                    }
                )
                taken.append(render.id or 0)
            if audit:
                await (await session.connection()).execute(insert(GcAudit), audit)
        await checkpoint("proxies recorded")
        if taken:
            disk = Freed()
            async with db.write() as session:
                await _settle(db, session, store, taken, disk)
            tally.bytes_freed += disk.freed
            reclaimed += len(taken)
        await checkpoint("proxies settled")
        await asyncio.sleep(0.02)  # leave the write lock free between batches

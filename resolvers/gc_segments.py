"""Proxy segments are derived data (``jobs.segments``): the GC reclaims the ones nothing
needs, with the admin's confirmed ``gcDelete`` or ``gcFullCycle`` only, and without an
archive stage (any of them can be rendered again).

A segment is reclaimable when no proxy a project shows lists it (the proxy of a current
version, or a project's latest proxy) and nothing has listed it for ``days_old`` days: a
render planning a proxy marks every segment it lists as used, in the same transaction as it
reads which ones are stored. The delete re-checks both conditions in its own statement, so
a render that has just listed a segment keeps it. A render that finds one gone (read just
before it went) encodes it again: segments heal, nothing a user keeps depends on them.
"""

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_
from sqlmodel import col, select

from models import keys
from models.db import Database
from models.store import MediaStore
from models.tables import PlanSegment, Project, Render, Segment, utcnow
from resolvers.gc_files import BATCH, Checkpoint, Freed, no_fault, remove

# Segments nobody has listed for this long are reclaimable (EDITGRAPH_GC_SEGMENT_DAYS).
DAYS_OLD = 7
# A file in segments/ without a row is left by a crash between the two; younger ones may
# be a render's segment whose row is about to be written.
ORPHAN_GRACE_S = 3600


def in_use() -> ColumnElement[bool]:
    """A segment listed by a proxy some project shows: its current version's, or its latest."""
    shown = (
        select(PlanSegment.render_id)
        .join(Render, col(Render.id) == col(PlanSegment.render_id))
        .join(Project, col(Project.id) == col(Render.project_id))
        .where(
            col(PlanSegment.segment_key) == col(Segment.key),
            col(Project.deleted_at).is_(None),
            or_(
                col(Render.version) == col(Project.current_version),
                col(Project.latest_proxy_id) == col(Render.id),
            ),
        )
    )
    return exists(shown)


def stale(days_old: int) -> ColumnElement[bool]:
    """Reclaimable: unused for ``days_old`` days and listed by no proxy a project shows."""
    cutoff = utcnow() - timedelta(days=days_old)
    return and_(col(Segment.used_at) < cutoff, ~in_use())


@dataclass(frozen=True)
class Reclaimable:
    count: int
    bytes: int


async def reclaimable(*, db: Database, days_old: int) -> Reclaimable:
    """What ``gcDelete`` would reclaim now: how many segments, how many bytes."""
    async with db.read() as session:
        count, size = (
            await session.exec(
                select(func.count(), func.coalesce(func.sum(Segment.bytes), 0)).where(
                    stale(days_old)
                )
            )
        ).one()
    return Reclaimable(int(count), int(size))


def _remove_all(store: MediaStore, found: list[str], disk: Freed) -> None:
    for key in found:
        remove(store, keys.segment(key), disk)


async def reclaim(
    *, db: Database, store: MediaStore, days_old: int, checkpoint: Checkpoint = no_fault
) -> tuple[int, int]:
    """Delete reclaimable segments in batches: (segments deleted, bytes freed on disk)."""
    freed_before = await converge(db=db, store=store)
    deleted, disk = 0, Freed()
    after = ""
    while True:
        async with db.read() as session:
            batch = list(
                (
                    await session.exec(
                        select(Segment.key)
                        .where(stale(days_old), col(Segment.key) > after)
                        .order_by(col(Segment.key))
                        .limit(BATCH)
                    )
                ).all()
            )
        if not batch:
            break
        after = batch[-1]
        await checkpoint("segments listed")
        async with db.write() as session:
            result = await session.exec(
                delete(Segment)
                .where(col(Segment.key).in_(batch), stale(days_old))
                .returning(col(Segment.key))
            )
            gone = [str(k) for k in result.scalars().all()]
        await asyncio.to_thread(_remove_all, store, gone, disk)
        deleted += len(gone)
        await asyncio.sleep(0.02)  # leave the write lock free between batches
    return deleted, freed_before + disk.freed


async def converge(*, db: Database, store: MediaStore) -> int:
    """Remove segment files a crash left without their row (older than the grace period);
    returns bytes freed."""
    disk = Freed()
    cutoff = time.time() - ORPHAN_GRACE_S

    def listed() -> list[str]:
        return [
            entry.key.rsplit("/", 1)[-1].removesuffix(".m4s")
            for entry in store.listing("segments")
            if entry.key.endswith(".m4s") and entry.key.count("/") == 2 and entry.modified < cutoff
        ]

    candidates = await asyncio.to_thread(listed)
    for at in range(0, len(candidates), BATCH):
        chunk = candidates[at : at + BATCH]
        async with db.read() as session:
            known = set(
                (await session.exec(select(Segment.key).where(col(Segment.key).in_(chunk)))).all()
            )
        await asyncio.to_thread(_remove_all, store, [k for k in chunk if k not in known], disk)
    return disk.freed

"""Source bytes no video references any more: deleted by ``gcDelete`` after a grace period,
without losing an upload of the same bytes that races it."""

import asyncio
import contextlib
from datetime import timedelta

from sqlalchemy import and_, exists, update
from sqlalchemy import delete as delete_rows
from sqlmodel import col, select

from models import keys
from models.db import Database
from models.store import MediaStore
from models.tables import Blob, GcAudit, Video, utcnow
from resolvers.gc_files import Checkpoint
from resolvers.users import Actor


async def delete_unreferenced(
    db: Database, store: MediaStore, actor: Actor | None, grace_s: int, checkpoint: Checkpoint
) -> int:
    """Delete source bytes unreferenced for longer than the grace period; returns bytes freed."""
    cutoff = utcnow() - timedelta(seconds=grace_s)
    async with db.read() as session:
        due = list(
            (
                await session.exec(
                    select(Blob).where(Blob.ref_count == 0, col(Blob.unreferenced_at) < cutoff)
                )
            ).all()
        )
    freed = 0
    for blob in due:
        async with db.write() as session:
            # A deleted video a deleted project still names keeps its row, and the blob row
            # with it: only the bytes go (an upload of them puts them back).
            named = exists(select(Video.id).where(col(Video.blob_id) == blob.id))
            unreferenced = and_(col(Blob.id) == blob.id, col(Blob.ref_count) == 0)
            kept = await session.exec(
                update(Blob)
                .where(unreferenced, named)
                .values(unreferenced_at=None)
                .returning(col(Blob.id))
            )
            if kept.scalar_one_or_none() is None:
                gone = await session.exec(
                    delete_rows(Blob).where(unreferenced, ~named).returning(col(Blob.id))
                )
                if gone.scalar_one_or_none() is None:
                    continue  # referenced again since the query above
            session.add(
                GcAudit(
                    actor_id=actor.id if actor else None,
                    action="delete-source",
                    blob_sha256=blob.sha256,
                    bytes=blob.bytes,
                )
            )
        await checkpoint("recorded")
        # Move the bytes aside first: an upload of the same bytes may have re-referenced them
        # in the meantime (it commits its row before placing its file); then they go back.
        names = [blob.key, keys.mezzanine(blob.sha256)]  # the original and its 480p copy
        aside = {k: keys.aside_temp() for k in names}
        await asyncio.to_thread(_set_aside, store, aside)
        async with db.read() as session:
            again = (
                await session.exec(
                    select(Blob).where(Blob.sha256 == blob.sha256, col(Blob.ref_count) > 0)
                )
            ).first()
        freed += await asyncio.to_thread(_put_back_or_free, store, aside, again is not None)
    return freed


def _set_aside(store: MediaStore, aside: dict[str, str]) -> None:
    for key, temp in aside.items():
        with contextlib.suppress(FileNotFoundError):
            store.move(key, temp)


def _put_back_or_free(store: MediaStore, aside: dict[str, str], wanted: bool) -> int:
    """Put files set aside back if their bytes are wanted again; else free them."""
    freed = 0
    for key, temp in aside.items():
        if wanted and store.exists(temp) and not store.exists(key):
            store.move(temp, key)
            continue
        # Counted only if this was its last name (and the upload did not take it back).
        freed += store.remove(temp)
    return freed

"""Where an export's bytes are, made to agree with its row: the only code that moves them.

One rule for every GC step: the new ``gc_state`` is committed first, with ``files_pending``
set; then, in a second transaction that has locked the row again and re-read it, the files
are made to agree with whatever the row says *now* (``settle``). A pin, a newer export or
another step that lands in between simply wins, because nothing is decided from an earlier
snapshot. A crash between the two leaves ``files_pending`` set, and ``converge`` settles it.

A batch reads only the columns it decides on (``Held``), writes with one statement per kind
of change, and touches files in a thread (``off_loop``) while its rows stay locked: the
server's event loop keeps answering while the GC works.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from sqlalchemy import select as sa_select
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import keys
from models.db import Database
from models.states import GcState, RenderStatus
from models.store import MediaStore, StoreUnavailable
from models.tables import Export, Project, Render
from resolvers.errors import MediaMissingError

log = logging.getLogger(__name__)

NONE, MARKED, ARCHIVED, DELETED = GcState.NONE, GcState.MARKED, GcState.ARCHIVED, GcState.DELETED
DONE = RenderStatus.DONE
BATCH = 100

P = ParamSpec("P")
T = TypeVar("T")


def archive_key(export: Export) -> str:
    """Where an archived export lives, in the seed's layout."""
    assert export.id is not None
    return keys.archive(export.id, export.version)


@dataclass(frozen=True)
class Held:
    """An export as its locked row says now, with what its render and project say about it:
    plain values, cheap to read in batches and safe to hand to a thread."""

    id: int
    version: int
    gc_state: GcState
    pinned: bool
    latest: bool  # its project's latest export
    files_pending: bool
    status: RenderStatus
    output_key: str | None
    bytes: int

    @property
    def protected(self) -> bool:
        """Pinned, or its project's latest export: never moved, whatever a stage was told."""
        return self.pinned or self.latest

    @property
    def archive_key(self) -> str:
        """Where it lives while archived."""
        return keys.archive(self.id, self.version)


async def lock(session: AsyncSession, ids: Sequence[int]) -> list[Held]:
    """Lock these exports' rows and their projects' for the rest of the transaction (FOR
    UPDATE on PostgreSQL; SQLite's writer already holds the database's write lock) and read
    them as they are now, by id."""
    query = (
        sa_select(
            col(Export.id),
            col(Export.version),
            col(Export.gc_state),
            col(Export.pinned),
            col(Project.latest_export_id),
            col(Export.files_pending),
            col(Render.status),
            col(Render.output_key),
            col(Render.bytes),
        )
        .join(Render, col(Render.id) == col(Export.render_id))
        .join(Project, col(Project.id) == col(Export.project_id))
        .where(col(Export.id).in_(list(ids)))
        .order_by(col(Export.id))
        .with_for_update(of=[Export, Project])
    )
    held = []
    for i, version, state, pinned, latest, pending, status, key, size in await (
        await session.connection()
    ).execute(query):
        assert i is not None  # a primary key read back
        held.append(Held(i, version, state, pinned, latest == i, pending, status, key, size or 0))
    return held


async def off_loop(work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking file work in a thread so the event loop keeps serving. It is waited for
    even when the caller is cancelled: the caller's row locks must outlast every file it
    touches, or a pin landing after the rollback could meet a half-moved file."""
    work_done = asyncio.ensure_future(asyncio.to_thread(work, *args, **kwargs))
    try:
        return await asyncio.shield(work_done)
    except asyncio.CancelledError:
        while not work_done.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([work_done])
        if not work_done.cancelled():
            work_done.exception()  # retrieved: the cancellation is what the caller sees
        raise


def has_bytes(store: MediaStore, export: Held) -> bool:
    """Whether the export's bytes exist under either of its names."""
    if export.output_key and store.exists(export.output_key):
        return True
    return store.exists(export.archive_key)


@dataclass
class Freed:
    """Bytes a settle freed (a file's last name went) and moved (a file got a new name)."""

    freed: int = 0
    moved: int = 0


def remove(store: MediaStore, key: str, tally: Freed) -> None:
    """Remove one name of a file; its bytes are freed only if it was the last one."""
    tally.freed += store.remove(key)


def _ensure(store: MediaStore, source_key: str, target_key: str, tally: Freed) -> int:
    """Make ``target`` hold the bytes of ``source`` (a hard link on disk, a copy in a
    bucket); returns the bytes that added. Raises ``MediaMissingError`` when neither
    exists: a state must never outlive its bytes."""
    if store.exists(target_key):
        return 0
    try:
        added = store.copy(source_key, target_key)
    except FileNotFoundError:
        raise MediaMissingError(f"neither {source_key} nor {target_key} exists") from None
    tally.moved += store.size(target_key) or 0
    return added


def _relocate(store: MediaStore, source_key: str, target_key: str, tally: Freed) -> None:
    """Move a file to its other name: ensured there, then its old name removed. Bytes a
    copy added are not counted as freed when the old name goes (a bucket has no rename)."""
    added = _ensure(store, source_key, target_key, tally)
    gone = Freed()
    remove(store, source_key, gone)
    if store.hard_links:  # in a bucket the bytes live on under the new name: none freed
        tally.freed += max(0, gone.freed - added)


def settle(store: MediaStore, export: Held, tally: Freed) -> None:
    """Make the files agree with the row as it is now. Call only with the row locked."""
    live = export.output_key
    kept = export.archive_key
    if export.status != DONE or live is None:
        # Being rendered (again): the worker owns the live name; an archive copy is stray.
        remove(store, kept, tally)
    elif export.gc_state in (NONE, MARKED):
        _relocate(store, kept, live, tally)
    elif export.gc_state == ARCHIVED:
        _relocate(store, live, kept, tally)
    else:  # DELETED
        remove(store, kept, tally)
        remove(store, live, tally)


def _settle_all(store: MediaStore, exports: Sequence[Held], tally: Freed) -> list[int]:
    """Settle each export (in a thread); the ids of those whose files now agree."""
    settled = []
    for export in exports:
        try:
            settle(store, export, tally)
        except MediaMissingError as exc:
            # Bytes lost before this run (nothing here removes a name a row needs): say so
            # loudly and leave the row pending, so every run reports it until someone acts.
            log.error("export %s: %s; its row is left as it is", export.id, exc.message)
            continue
        except StoreUnavailable as exc:
            # A bucket that failed this one file: the row stays pending for the next run,
            # and the other exports of the batch are still settled.
            log.warning("export %s: not settled this time (%s)", export.id, exc)
            continue
        settled.append(export.id)
    return settled


async def settle_locked(
    session: AsyncSession, store: MediaStore, ids: Sequence[int], tally: Freed | None = None
) -> int:
    """Lock these exports, re-read them, and settle those whose files may disagree."""
    tally = tally if tally is not None else Freed()
    # Settled by someone else in between, or not: only the row says.
    pending = [e for e in await lock(session, ids) if e.files_pending]
    if not pending:
        return 0
    settled = await off_loop(_settle_all, store, pending, tally)
    if settled:
        await (await session.connection()).execute(
            update(Export).where(col(Export.id).in_(settled)).values(files_pending=False)
        )
    return len(settled)


async def no_fault(_: str) -> None:
    return None


# Test hook: awaited at every step boundary (between transactions); production passes nothing.
Checkpoint = Callable[[str], Awaitable[None]]


async def converge(*, db: Database, store: MediaStore, checkpoint: Checkpoint = no_fault) -> int:
    """Settle every export a step left pending (a crash between its commit and its files)."""
    fixed, after = 0, 0
    while True:
        async with db.read() as session:
            ids = list(
                (
                    await session.exec(
                        select(Export.id)
                        .where(col(Export.files_pending).is_(True), col(Export.id) > after)
                        .order_by(col(Export.id))
                        .limit(BATCH)
                    )
                ).all()
            )
        if not ids:
            return fixed
        after = ids[-1] or 0
        await checkpoint("converge listed")
        async with db.write() as session:
            fixed += await settle_locked(session, store, [i for i in ids if i is not None])
        await asyncio.sleep(0.02)  # leave the write lock free between batches

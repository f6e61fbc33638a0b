"""Uploads: probe, deduplicate by SHA-256 and count references; list and delete videos."""

import asyncio
import re
import unicodedata
from collections.abc import Sequence

from sqlalchemy import case, update
from sqlalchemy import delete as delete_rows
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import keys, redis_keys
from models.db import Database
from models.store import MediaStore, StagedFile, StoreUnavailable
from models.tables import Blob, EditOperation, Project, Video, utcnow
from resolvers import ids, pagination
from resolvers.errors import (
    InvalidMediaError,
    NotFoundError,
    StorageUnavailableError,
    VideoInUseError,
)
from resolvers.probe import Probe, probe
from resolvers.queue import JobQueue, deliver
from resolvers.users import Actor

MAX_FILENAME = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


def sanitize_filename(raw: str) -> str:
    """A display name safe to show and log: no paths, no control characters, not overlong."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("", name)
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip(" .")
    if len(name) > MAX_FILENAME:
        _, dot, ext = name.rpartition(".")
        keep = ext if dot and len(ext) <= 10 else ""
        name = name[: MAX_FILENAME - len(keep) - 1] + ("." + keep if keep else "")
    return name or "upload"


async def upload_video(
    *, db: Database, store: MediaStore, queue: JobQueue, actor: Actor, staged: StagedFile
) -> tuple[Video, bool]:
    """Store an upload once per SHA-256; returns the video and whether it was deduplicated."""
    try:
        info = await probe(staged.path)
    except InvalidMediaError:
        staged.discard()
        raise
    key = keys.source(staged.sha256, info.extension)
    for _ in range(3):
        try:
            video, deduplicated = await _record_upload(db, actor, staged, key, info)
        except IntegrityError:
            # PostgreSQL: a concurrent upload of the same bytes by the same owner won the
            # unique (owner, blob) race; the retry finds its video.
            continue
        # The reference is committed before the bytes are placed, so a GC deleting an
        # unreferenced blob of the same bytes at this moment puts its file back (gc.py).
        try:
            await asyncio.to_thread(store.adopt, staged, key)
        except Exception as exc:
            # Not placed (a bucket that did not answer): the upload is undone, not half kept.
            staged.discard()
            if not deduplicated:  # a video the caller had before stays
                await delete_video(db=db, actor=actor, video_id=video.id or 0)
            if isinstance(exc, StoreUnavailable):
                raise StorageUnavailableError from exc
            raise
        # The 480p working copy is made now, so the first proxy does not wait for it.
        await deliver(queue, redis_keys.mezzanine_job(video.blob_id), "mezzanine", video.blob_id)
        return video, deduplicated
    raise RuntimeError("upload kept conflicting with concurrent uploads")


async def _record_upload(
    db: Database, actor: Actor, staged: StagedFile, key: str, info: Probe
) -> tuple[Video, bool]:
    async with db.write() as session:
        existing = (
            await session.exec(
                select(Video)
                .join(Blob, col(Blob.id) == col(Video.blob_id))
                .where(Video.owner_id == actor.id, Blob.sha256 == staged.sha256)
            )
        ).first()
        if existing is not None and existing.deleted_at is None:
            existing.uploaded_at = utcnow()  # theirs now, whoever brought the bytes first
            session.add(existing)
            return existing, True
        if existing is not None:  # deleted while a deleted project named it: back it comes
            revived = await session.exec(
                update(Video)
                .where(col(Video.id) == existing.id, col(Video.deleted_at).is_not(None))
                .values(deleted_at=None)
                .returning(col(Video.id))
            )
            if revived.scalar_one_or_none() is not None:  # once, however many upload at once
                await _reference_blob(db, session, staged, key)
            await session.refresh(existing)
            return existing, False
        blob_id = await _reference_blob(db, session, staged, key)
        video = video_row(actor.id, blob_id, staged.filename, info)
        session.add(video)
        await session.flush()
        return video, False


def video_row(owner_id: int, blob_id: int, filename: str, facts: Probe) -> Video:
    """A video of ``owner_id`` over a blob, described by what the probe found."""
    return Video(
        owner_id=owner_id,
        blob_id=blob_id,
        filename=sanitize_filename(filename),
        format_name=facts.demuxer,
        duration=facts.duration,
        width=facts.width,
        height=facts.height,
        fps=facts.fps,
        video_codec=facts.video_codec,
        audio_codec=facts.audio_codec,
    )


async def _reference_blob(db: Database, session: AsyncSession, staged: StagedFile, key: str) -> int:
    return await reference_blob(db, session, staged.sha256, key, staged.bytes)


async def reference_blob(
    db: Database, session: AsyncSession, sha256: str, key: str, size: int
) -> int:
    """Insert the blob with one reference, or add a reference to the existing one, atomically."""
    dialect = sqlite if db.is_sqlite else postgresql
    stmt = dialect.insert(Blob).values(
        sha256=sha256, key=key, bytes=size, ref_count=1, created_at=utcnow()
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[Blob.sha256],
        set_={"ref_count": Blob.ref_count + 1, "unreferenced_at": None},
    ).returning(col(Blob.id))
    return int((await session.exec(stmt)).scalar_one())


async def get_video(*, db: Database, actor: Actor, video_id: int) -> Video:
    """One of the actor's videos, or ``NotFoundError``."""
    async with db.read() as session:
        video = await session.get(Video, video_id)
    if video is None or video.owner_id != actor.id or video.deleted_at is not None:
        raise NotFoundError("Video", ids.encode("Video", video_id))
    return video


async def videos_by_ids(*, db: Database, actor: Actor, ids: Sequence[int]) -> list[Video | None]:
    """Batch lookup for loaders: the actor's videos (an admin's: any) in the order asked,
    None where absent."""
    query = select(Video).where(col(Video.id).in_(ids))
    if not actor.is_admin:
        query = query.where(Video.owner_id == actor.id)
    async with db.read() as session:
        rows = (await session.exec(query)).all()
    found = {v.id: v for v in rows}
    return [found.get(i) for i in ids]


async def blobs_by_ids(*, db: Database, ids: Sequence[int]) -> list[Blob | None]:
    """Batch lookup of blobs (a video's sha256 and size), in the order asked."""
    async with db.read() as session:
        rows = (await session.exec(select(Blob).where(col(Blob.id).in_(ids)))).all()
    found = {b.id: b for b in rows}
    return [found.get(i) for i in ids]


async def list_videos(
    *, db: Database, actor: Actor, first: int, after: str | None
) -> pagination.Page[Video]:
    """The actor's videos, newest first."""
    query = select(Video).where(Video.owner_id == actor.id, col(Video.deleted_at).is_(None))
    return await pagination.newest_first(
        db, query, col(Video.id), lambda v: v.id, first=first, after=after
    )


async def delete_video(*, db: Database, actor: Actor, video_id: int) -> Video:
    """Delete a video no project uses and drop its blob reference; the bytes stay for the GC."""
    async with db.write() as session:
        video = await session.get(Video, video_id, with_for_update=True)
        if video is None or video.owner_id != actor.id or video.deleted_at is not None:
            raise NotFoundError("Video", ids.encode("Video", video_id))
        named_by: dict[int, bool] = {}  # project id → whether it was deleted
        for query in (
            select(Project.id, Project.deleted_at).where(Project.source_video_id == video_id),
            select(Project.id, Project.deleted_at)
            .join(EditOperation, col(EditOperation.project_id) == col(Project.id))
            .where(EditOperation.video_id == video_id),
        ):
            for project_id, deleted_at in (await session.exec(query)).all():
                if project_id is not None:
                    named_by[project_id] = deleted_at is not None
        users = sorted(p for p, deleted in named_by.items() if not deleted)
        if users:
            raise VideoInUseError(users)
        # Only the request that really deletes the row drops its reference: concurrent
        # deletes of one video wait on the row lock, then find nothing to delete. A video
        # a deleted project still names keeps its row (that history refers to it).
        if named_by:
            gone = await session.exec(
                update(Video)
                .where(col(Video.id) == video_id, col(Video.deleted_at).is_(None))
                .values(deleted_at=utcnow())
                .returning(col(Video.blob_id))
            )
        else:
            gone = await session.exec(
                delete_rows(Video).where(col(Video.id) == video_id).returning(col(Video.blob_id))
            )
        if gone.scalar_one_or_none() is None:
            raise NotFoundError("Video", ids.encode("Video", video_id))
        await session.exec(
            update(Blob)
            .where(col(Blob.id) == video.blob_id)
            .values(
                ref_count=Blob.ref_count - 1,
                # When the last reference goes, the GC's grace period starts.
                unreferenced_at=case((col(Blob.ref_count) == 1, utcnow()), else_=None),
            )
        )
    return video

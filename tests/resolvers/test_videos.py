"""Uploads: probing, deduplication by SHA-256, reference counts and deletion."""

import asyncio
import hashlib
from pathlib import Path

import pytest
from sqlmodel import select

from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from models.tables import Blob, Video
from resolvers import versions, videos
from resolvers.errors import InvalidMediaError, NotFoundError, VideoInUseError
from resolvers.users import Actor
from tests.helpers.domain import stage
from tests.helpers.polling import until

# Uploads and their deduplication, on the media root and in a bucket.
pytestmark = pytest.mark.both_storages


def host_file_leaked(root: Path) -> bool:
    """Whether any byte run of a host file the crafted media point at landed under ``root``."""
    secret = Path("/etc/passwd").read_bytes()[:32]
    return any(secret in p.read_bytes() for p in root.rglob("*") if p.is_file())


async def blobs(db: Database) -> list[Blob]:
    async with db.read() as s:
        return list((await s.exec(select(Blob))).all())


async def test_upload_probes_and_stores_once_by_sha256(
    db: Database, queue: ArqQueue, store: MediaStore, alice: Actor, media: dict[str, Path]
) -> None:
    video, dedup = await videos.upload_video(
        db=db, queue=queue, store=store, actor=alice, staged=stage(store, media["clip"])
    )
    digest = hashlib.sha256(media["clip"].read_bytes()).hexdigest()
    assert not dedup
    assert (video.width, video.height, video.has_audio, video.video_codec) == (
        160,
        120,
        True,
        "h264",
    )
    assert video.duration == pytest.approx(2.0, abs=0.1)
    assert video.fps == pytest.approx(25.0)
    stored = f"videos/{digest}.mp4"
    assert store.read_bytes(stored) == media["clip"].read_bytes()
    assert store.temp_entries() == [] and store.listing("temp") == []
    [blob] = await blobs(db)
    assert (blob.sha256, blob.ref_count, blob.bytes) == (digest, 1, store.size(stored))


async def test_same_owner_gets_the_same_video_and_other_owner_a_new_one(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    bob: Actor,
    media: dict[str, Path],
) -> None:
    first, _ = await videos.upload_video(
        db=db, queue=queue, store=store, actor=alice, staged=stage(store, media["clip"])
    )
    again, dedup = await videos.upload_video(
        db=db, queue=queue, store=store, actor=alice, staged=stage(store, media["clip"], "copy.mp4")
    )
    assert dedup and again.id == first.id
    theirs, dedup_b = await videos.upload_video(
        db=db, queue=queue, store=store, actor=bob, staged=stage(store, media["clip"])
    )
    assert not dedup_b and theirs.id != first.id and theirs.blob_id == first.blob_id
    [blob] = await blobs(db)
    assert blob.ref_count == 2
    assert len(store.listing("videos")) == 1
    assert store.temp_entries() == []


async def test_concurrent_uploads_of_the_same_bytes_end_with_one_blob(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    bob: Actor,
    media: dict[str, Path],
) -> None:
    staged = [(actor, stage(store, media["clip"])) for actor in (alice, bob) for _ in range(5)]
    results = await asyncio.gather(
        *(
            videos.upload_video(db=db, queue=queue, store=store, actor=a, staged=s)
            for a, s in staged
        )
    )
    assert len({v.id for v, _ in results}) == 2  # one video per owner
    assert sum(not dedup for _, dedup in results) == 2
    [blob] = await blobs(db)
    assert blob.ref_count == 2
    async with db.read() as s:
        assert len((await s.exec(select(Video))).all()) == 2
    assert len(store.listing("videos")) == 1
    assert store.temp_entries() == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty", "empty"),
        ("text", "text"),
        ("playlist", "playlist"),
        ("concat_list", "playlist"),
        ("truncated", "incomplete"),
        ("image", "not a video container"),
        ("audio_only", "no video stream"),
        ("absurd_dimensions", "8208x16"),
        ("zero_duration", "no video stream"),
        ("avi_with_playlist", "subtitle"),
        ("claims_100000x100000", "impossible"),
    ],
)
async def test_bad_media_is_refused_and_leaves_nothing_behind(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    hostile: dict[str, Path],
    name: str,
    reason: str,
) -> None:
    with pytest.raises(InvalidMediaError) as caught:
        await videos.upload_video(
            db=db, queue=queue, store=store, actor=alice, staged=stage(store, hostile[name])
        )
    assert reason in caught.value.message
    assert store.temp_entries() == []
    assert store.listing("videos") == []
    # A refused upload's copy in a bucket is removed too (by its uploader, as it stops).
    await until(lambda: _empty(store, "temp"), within=10, what="no upload left in temp")
    assert await blobs(db) == []
    assert not host_file_leaked(store.root)


async def test_delete_refuses_while_used_then_drops_the_reference_but_keeps_bytes(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    bob: Actor,
    media: dict[str, Path],
) -> None:
    video, _ = await videos.upload_video(
        db=db, queue=queue, store=store, actor=alice, staged=stage(store, media["clip"])
    )
    assert video.id is not None
    project = await versions.create_project(
        db=db, queue=queue, actor=alice, video_id=video.id, name="p"
    )
    with pytest.raises(VideoInUseError) as caught:
        await videos.delete_video(db=db, actor=alice, video_id=video.id)
    assert caught.value.project_ids == [project.id]
    with pytest.raises(NotFoundError):
        await videos.delete_video(db=db, actor=bob, video_id=video.id)

    spare, _ = await videos.upload_video(
        db=db, queue=queue, store=store, actor=alice, staged=stage(store, media["other"])
    )
    assert spare.id is not None
    await videos.delete_video(db=db, actor=alice, video_id=spare.id)
    with pytest.raises(NotFoundError):
        await videos.get_video(db=db, actor=alice, video_id=spare.id)
    counts = {b.id: b.ref_count for b in await blobs(db)}
    assert counts == {video.blob_id: 1, spare.blob_id: 0}
    # Bytes are the GC's to delete, never deleteVideo's.
    assert len(store.listing("videos")) == 2


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("holiday.mp4", "holiday.mp4"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\clip.mov", "clip.mov"),
        ("bad\x00na\x1bme\n.mp4", "badname.mp4"),
        ("", "upload"),
        ("..", "upload"),
        ("a" * 300 + ".mp4", "a" * 196 + ".mp4"),
    ],
)
def test_original_names_are_sanitized(raw: str, clean: str) -> None:
    assert videos.sanitize_filename(raw) == clean


async def _empty(store: MediaStore, area: str) -> bool:
    return not await asyncio.to_thread(store.listing, area)

"""The domain driven directly, as the API would drive it: staged uploads, projects, histories."""

from pathlib import Path
from typing import Any

from sqlmodel import select

from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore, StagedFile
from models.tables import EditOperation, Project, Version
from resolvers import ops, users, versions, videos
from resolvers.users import Actor

BLUR = {"type": "gaussian-blur", "params": {"radius": 5}}
BRIGHT = {"type": "brightness", "params": {"brightness": 20}}
FLIP: dict[str, Any] = {"type": "flip", "params": {"axis": "horizontal"}}


def stage(store: MediaStore, source: Path, filename: str | None = None) -> StagedFile:
    """Stream a file into temp/ the way an upload does."""
    staging = store.stage(filename or source.name, max_bytes=1 << 30)
    with source.open("rb") as fh:
        while chunk := fh.read(65536):
            staging.write(chunk)
    return staging.finish()


async def new_project(
    db: Database, queue: ArqQueue, store: MediaStore, actor: Actor, source: Path
) -> Project:
    """Upload ``source`` as ``actor`` and make a project of it (version 0, its proxy queued)."""
    video, _ = await videos.upload_video(
        db=db, queue=queue, store=store, actor=actor, staged=stage(store, source)
    )
    assert video.id is not None
    return await versions.create_project(
        db=db, queue=queue, actor=actor, video_id=video.id, name="holiday"
    )


async def counts(db: Database, project_id: int) -> tuple[int, int]:
    """How many versions and ops the project has stored."""
    async with db.read() as s:
        v = len((await s.exec(select(Version).where(Version.project_id == project_id))).all())
        o = len(
            (
                await s.exec(select(EditOperation).where(EditOperation.project_id == project_id))
            ).all()
        )
    return v, o


async def insert_history(db: Database, project: Project, count: int) -> None:
    """``count`` flips in one version, written directly (no append would accept them)."""
    assert project.id is not None
    async with db.write() as session:
        session.add(
            versions.new_version(
                project.id,
                1,
                0,
                Actor(id=project.owner_id, name="", is_admin=False),
                ops.Frame(160, 120, 2.0),
                ops.chain_hash(ops.ROOT_HASH, [FLIP] * count),
                count,
            )
        )
        for seq in range(count):
            session.add(
                EditOperation(
                    project_id=project.id, version=1, seq=seq, type="flip", params=FLIP["params"]
                )
            )
        await session.flush()
        stored = await session.get(Project, project.id)
        assert stored is not None
        stored.current_version = 1
        session.add(stored)


async def actor_named(db: Database, name: str) -> Actor:
    """The account ``name`` (made by the ``tokens`` fixture, say) as an actor."""
    found = await users.user_by_name(db=db, name=name)
    assert found is not None, f"no user {name!r}"
    return Actor.of(found)

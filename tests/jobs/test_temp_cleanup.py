"""temp/ after a crash: what nothing touches for the grace period goes; live entries stay."""

import asyncio
import os
from pathlib import Path

from sqlalchemy import update
from sqlmodel import col, select

from editgraph.settings import Settings
from jobs.events import EventLog
from jobs.queue import ArqQueue
from jobs.reconcile import clean_temp, reconcile
from jobs.runtime import Runtime
from models.db import Database
from models.states import RenderStatus
from models.store import MediaStore
from models.tables import Render
from resolvers import ids
from tests.helpers.api import APPEND, Api, new_project

GRACE_S = 1.0


async def test_the_reconciler_removes_crash_leftovers_and_keeps_live_entries(
    api: Api,
    tokens: dict[str, str],
    media: dict[str, Path],
    settings: Settings,
    db: Database,
    queue: ArqQueue,
) -> None:
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    await api.data(alice, APPEND, {"p": pid, "ops": [{"grayscale": True}]})
    project_id = ids.decode(pid, "Project")
    async with db.read() as session:
        rows = (await session.exec(select(Render).where(Render.project_id == project_id))).all()
    by_version = {r.version: r.id for r in rows}
    running, superseded = by_version[1], by_version[0]
    # A worker renders `running` under its second attempt; `superseded` was cancelled
    # after a worker running its first attempt was killed.
    async with db.write() as session:
        await session.exec(
            update(Render)
            .where(col(Render.id) == running)
            .values(status=RenderStatus.RUNNING, attempts=2)
        )
        await session.exec(
            update(Render)
            .where(col(Render.id) == superseded)
            .values(status=RenderStatus.CANCELLED, attempts=1)
        )
    store = MediaStore(settings.media_root)
    temp = store.root / "temp"

    def put(name: str, size: int = 1000) -> Path:
        path = temp / name
        path.write_bytes(b"x" * size)
        return path

    # Left by crashes: a killed upload, the running render's earlier attempt, the
    # cancelled render's partial output and its work folder.
    put("upload-killed.part", 50_000)
    put(f"render-{running}-1.mp4")
    put(f"render-{superseded}-1.mp4")
    (temp / f"render-{superseded}-1.d").mkdir()
    put(f"render-{superseded}-1.d/text-0.txt")
    # Live, though old: the running attempt's output and its work folder (ffmpeg reads the
    # text files it wrote at the start).
    put(f"render-{running}-2.mp4")
    (temp / f"render-{running}-2.d").mkdir()
    put(f"render-{running}-2.d/text-0.txt")
    # An upload being streamed right now: it started before the grace period.
    streaming = store.stage("holiday.mp4", max_bytes=10**9)
    streaming.write(b"a" * 10_000)
    # A file moved aside by the GC keeps its old mtime through the rename.
    aside_source = store.root / "export" / "old.mp4"
    aside_source.write_bytes(b"y" * 2000)
    os.utime(aside_source, (946684800, 946684800))  # 2000-01-01

    await asyncio.sleep(GRACE_S + 0.5)  # everything above is now older than the grace period
    streaming.write(b"b" * 10_000)
    os.replace(aside_source, temp / "gc-aside")
    put("mezzanine-fresh.mp4")

    runtime = Runtime(
        config=settings.model_copy(update={"temp_grace_s": GRACE_S}),
        db=db,
        store=store,
        redis=queue.pool,
        events=EventLog(queue.pool),
    )
    await reconcile({"runtime": runtime})

    assert sorted(p.name for p in store.temp_entries()) == sorted(
        [
            "gc-aside",
            "mezzanine-fresh.mp4",
            f"render-{running}-2.d",
            f"render-{running}-2.mp4",
            streaming.path.name,
        ]
    )
    assert (temp / f"render-{running}-2.d" / "text-0.txt").read_bytes() == b"x" * 1000
    # The upload carries on and finishes whole.
    streaming.write(b"c" * 10_000)
    staged = streaming.finish()
    assert staged.path.stat().st_size == staged.bytes == 30_000


async def test_nothing_is_removed_within_the_grace_period(db: Database, store: MediaStore) -> None:
    for name in ("upload-a.part", "render-1-1.mp4", "gc-1", "mezzanine-1.mp4"):
        (store.root / "temp" / name).write_bytes(b"x")
    assert await clean_temp(db=db, store=store, grace_s=3600) == 0
    assert len(store.temp_entries()) == 4

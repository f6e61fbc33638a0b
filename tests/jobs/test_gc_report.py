"""The weekly GC cron reports, and marks only when configured to; it never deletes."""

from pathlib import Path

import pytest

from jobs.events import EventLog
from jobs.gc_report import gc_report
from jobs.queue import ArqQueue
from jobs.runtime import Runtime, WorkerSettings
from models.db import Database
from models.store import MediaStore
from resolvers.users import Actor
from tests.helpers.gc import exports_on_disk, states


@pytest.mark.parametrize("marks", [False, True])
async def test_the_weekly_report(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    media: dict[str, Path],
    redis_url: str,
    marks: bool,
) -> None:
    await exports_on_disk(db, queue, store, alice, media["clip"], count=3)
    config = WorkerSettings(
        database_url=db.url, redis_url=redis_url, media_root=store.root, gc_cron_mark=marks
    )
    runtime = Runtime(
        config=config, db=db, store=store, redis=queue.pool, events=EventLog(queue.pool)
    )
    files_before = sorted(p for p in store.root.rglob("*") if p.is_file())
    report = await gc_report({"runtime": runtime})
    assert report["candidates"] == 2 and report["bytes"] == 1600
    assert report["marked"] == (2 if marks else 0)
    expected = "marked" if marks else "none"
    assert await states(db) == {1: expected, 2: expected, 3: "none"}
    assert sorted(p for p in store.root.rglob("*") if p.is_file()) == files_before

"""gcCandidates and gcMark over 1,000,000 export rows generated in the database: time and
peak memory. Both are single queries, so memory stays flat whatever the row count."""

import asyncio
import os
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bench.common import emit, scratch_postgres
from bench.upload import PeakRss
from models.db import Database
from models.migrate import upgrade
from resolvers import gc, gc_policy

ROWS = int(os.environ.get("EDITGRAPH_BENCH_GC_ROWS", "1000000"))
PER_PROJECT = 100
MiB = 1024 * 1024


def numbers(dialect: str, count: int) -> str:
    """A row source of 1..count in the database's own dialect."""
    if dialect == "sqlite":
        return (
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) "
            "SELECT i FROM n"
        )
    return f"SELECT generate_series(1, {count}) AS i"


async def fill(db: Database) -> None:
    dialect = "sqlite" if db.is_sqlite else "postgresql"
    projects = ROWS // PER_PROJECT
    old = "2020-01-01 00:00:00"
    statements = [
        f"INSERT INTO users (id, name, is_admin, token_hash, created_at) VALUES (1, 'bench', false, 'x', '{old}')",
        f"INSERT INTO blobs (id, sha256, key, bytes, ref_count, created_at) VALUES (1, 'x', 'videos/x.mp4', 1, 1, '{old}')",
        "INSERT INTO videos (id, owner_id, blob_id, filename, format_name, duration, width, height, fps,"
        f" video_codec, created_at) VALUES (1, 1, 1, 'x.mp4', 'mov', 10, 640, 360, 25, 'h264', '{old}')",
        "INSERT INTO projects (id, owner_id, name, source_video_id, current_version, latest_export_id, created_at)"
        f" SELECT i, 1, 'p', 1, {PER_PROJECT}, i * {PER_PROJECT}, '{old}' FROM ({numbers(dialect, projects)}) AS s",
        "INSERT INTO renders (id, project_id, kind, version, preset, status, progress, content_key, job_id,"
        " output_key, bytes, attempts, created_at)"
        f" SELECT i, (i - 1) / {PER_PROJECT} + 1, 'export', (i - 1) % {PER_PROJECT} + 1, 'export', 'done', 1,"
        f" 'k', 'j', 'export/x.mp4', 1048576, 1, '{old}' FROM ({numbers(dialect, ROWS)}) AS s",
        "INSERT INTO exports (id, project_id, version, render_id, pinned, gc_state, created_at)"
        f" SELECT i, (i - 1) / {PER_PROJECT} + 1, (i - 1) % {PER_PROJECT} + 1, i, (i % 50 = 0),"
        f" 'none', '{old}' FROM ({numbers(dialect, ROWS)}) AS s",
    ]
    async with db.engine.begin() as conn:
        for sql in statements:
            await conn.execute(text(sql))


async def one(name: str, url: str) -> None:
    db = Database(url)
    await upgrade(db)
    start = time.perf_counter()
    await fill(db)
    emit(f"GC bench: generate {ROWS} exports ({name})", time.perf_counter() - start, "s")
    with PeakRss() as rss:
        start = time.perf_counter()
        _, count, size = await gc_policy.candidates(db=db, days_old=30, keep_latest=1)
        elapsed = time.perf_counter() - start
    emit(
        f"gcCandidates over {ROWS} exports ({name})",
        elapsed,
        "s",
        candidates=count,
        bytes=size,
        peak_rss_growth_mib=round(rss.growth / MiB, 1),
    )
    with PeakRss() as rss:
        start = time.perf_counter()
        outcome = await gc.mark(db=db, actor=None, days_old=30, keep_latest=1)
        elapsed = time.perf_counter() - start
    emit(
        f"gcMark over {ROWS} exports ({name})",
        elapsed,
        "s",
        marked=outcome.marked,
        peak_rss_growth_mib=round(rss.growth / MiB, 1),
    )
    await db.dispose()


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await one("sqlite", f"sqlite+aiosqlite:///{Path(tmp) / 'gc.db'}")
    url = await scratch_postgres("editgraph_bench_gc")
    if url is None:
        emit("GC bench (postgresql)", 0, "skipped", reason="no PostgreSQL on 127.0.0.1:5432")
        return
    await one("postgresql", url)


if __name__ == "__main__":
    asyncio.run(main())

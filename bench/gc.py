"""gcCandidates and gcMark over 1,000,000 export rows generated in the database: time and
peak memory. Both are single queries, so memory stays flat whatever the row count.

The baseline, in the same run on the same rows, is the candidate query editgraph used before:
every finished export ranked within its project by a window function."""

import asyncio
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Select, func, text
from sqlalchemy import select as sa_select
from sqlmodel import col

from bench.common import emit, scratch_postgres
from bench.upload import PeakRss
from models.db import Database
from models.migrate import upgrade
from models.states import RenderStatus
from models.tables import Export, Project, Render, utcnow
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
        f"INSERT INTO users (id, name, is_admin, created_at) VALUES (1, 'bench', false, '{old}')",
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
    # What autovacuum (PostgreSQL) or `PRAGMA optimize` (SQLite) does after a bulk load in
    # production; without it the planner believes the tables are empty.
    async with db.engine.begin() as conn:
        await conn.execute(text("ANALYZE"))


def ranked_candidates(keep_latest: int) -> "Select[int, int | None]":
    """The baseline: rank every finished, undeleted export within its project."""
    rank = (
        func.row_number()
        .over(partition_by=col(Export.project_id), order_by=col(Export.version).desc())
        .label("rank")
    )
    ranked = (
        sa_select(col(Export.id).label("id"), rank)
        .join(Render, col(Render.id) == col(Export.render_id))
        .where(col(Render.status) == RenderStatus.DONE, col(Export.gc_state) != "deleted")
        .subquery()
    )
    ids = (
        sa_select(col(Export.id))
        .join(ranked, ranked.c.id == col(Export.id))
        .join(Project, col(Project.id) == col(Export.project_id))
        .where(
            col(Export.gc_state) == "none",
            col(Export.created_at) < utcnow() - timedelta(days=30),
            ranked.c.rank > keep_latest,
            gc_policy.unprotected(),
        )
        .subquery()
    )
    totals = (
        sa_select(func.count(), func.coalesce(func.sum(col(Render.bytes)), 0))
        .select_from(Export)
        .join(Render, col(Render.id) == col(Export.render_id))
        .where(col(Export.id).in_(sa_select(ids.c.id)))
    )
    return totals


async def one(name: str, url: str) -> None:
    db = Database(url)
    await upgrade(db)
    start = time.perf_counter()
    await fill(db)
    emit(f"GC bench: generate {ROWS} exports ({name})", time.perf_counter() - start, "s")
    start = time.perf_counter()
    async with db.engine.connect() as conn:
        old_count, _ = (await conn.execute(ranked_candidates(1))).one()
    baseline = time.perf_counter() - start
    with PeakRss() as rss:
        start = time.perf_counter()
        _, count, size = await gc_policy.candidates(db=db, days_old=30, keep_latest=1)
        elapsed = time.perf_counter() - start
    assert count == old_count, (count, old_count)
    emit(
        f"gcCandidates over {ROWS} exports ({name})",
        elapsed,
        "s",
        baseline,
        baseline_is="the ranked candidate query (every export ranked in its project)",
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
        baseline,
        baseline_is="the ranked candidate query alone, which marking used to run inside it",
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

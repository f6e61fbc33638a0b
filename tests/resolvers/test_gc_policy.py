"""The candidate query agrees with the rule it encodes, on mixed data: for each project, the
finished exports that are not collected yet, old enough, unprotected and older than its
``keep_latest`` newest finished, undeleted exports."""

import random
from datetime import timedelta
from typing import Any

from sqlalchemy import insert

from models.db import Database
from models.tables import Blob, Export, Project, Render, User, Video, utcnow
from resolvers import gc_policy

STATUSES = ["done", "done", "done", "failed", "queued"]
STATES = ["none", "none", "none", "marked", "archived", "deleted"]


async def test_candidates_follow_the_rule_for_every_keep_latest(db: Database) -> None:
    rng = random.Random(7)
    now = utcnow()
    projects: list[dict[str, Any]] = []
    renders: list[dict[str, Any]] = []
    exports: list[dict[str, Any]] = []
    for pid in range(1, 31):
        versions = rng.sample(range(1, 40), rng.randint(0, 12))
        latest = None
        for version in versions:
            eid = len(exports) + 1
            renders.append(
                {
                    "id": eid,
                    "project_id": pid,
                    "kind": "export",
                    "version": version,
                    "preset": "export",
                    "status": rng.choice(STATUSES),
                    "progress": 1,
                    "content_key": "k",
                    "job_id": f"j{eid}",
                    "bytes": rng.randint(1, 1000),
                    "attempts": 1,
                    "created_at": now,
                }
            )
            exports.append(
                {
                    "id": eid,
                    "project_id": pid,
                    "version": version,
                    "render_id": eid,
                    "pinned": rng.random() < 0.15,
                    "gc_state": rng.choice(STATES),
                    "created_at": now - timedelta(days=rng.choice([1, 40, 90])),
                }
            )
            if rng.random() < 0.3:
                latest = eid
        projects.append(
            {
                "id": pid,
                "owner_id": 1,
                "name": f"p{pid}",
                "source_video_id": 1,
                "current_version": 40,
                "latest_export_id": latest,
                "created_at": now,
            }
        )
    async with db.write() as session:
        conn = await session.connection()
        await conn.execute(
            insert(User), [{"id": 1, "name": "u", "is_admin": False}]
        )
        await conn.execute(
            insert(Blob),
            [{"id": 1, "sha256": "x", "key": "videos/x.mp4", "bytes": 1, "ref_count": 1}],
        )
        await conn.execute(
            insert(Video),
            [
                {
                    "id": 1,
                    "owner_id": 1,
                    "blob_id": 1,
                    "filename": "x.mp4",
                    "format_name": "mov",
                    "duration": 10,
                    "width": 64,
                    "height": 48,
                    "fps": 25,
                    "video_codec": "h264",
                }
            ],
        )
        await conn.execute(insert(Project), projects)
        await conn.execute(insert(Render), renders)
        await conn.execute(insert(Export), exports)

    status = {r["id"]: r["status"] for r in renders}
    size = {r["id"]: r["bytes"] for r in renders}
    latest_of = {p["id"]: p["latest_export_id"] for p in projects}
    sizes: dict[tuple[int, int], int] = {}
    for keep in range(4):
        for days in (0, 30, 60):
            expected = set()
            for pid in latest_of:
                ranked = sorted(
                    (
                        e
                        for e in exports
                        if e["project_id"] == pid
                        and status[e["render_id"]] == "done"
                        and e["gc_state"] != "deleted"
                    ),
                    key=lambda e: -e["version"],
                )
                for e in ranked[keep:]:
                    if (
                        e["gc_state"] == "none"
                        and e["created_at"] < now - timedelta(days=days)
                        and not e["pinned"]
                        and e["id"] != latest_of[pid]
                    ):
                        expected.add(e["id"])
            sizes[(keep, days)] = len(expected)
            async with db.read() as session:
                found = (
                    await (await session.connection()).execute(gc_policy.candidate_ids(days, keep))
                ).scalars()
                assert set(found) == expected, (keep, days)
            rows, count, total = await gc_policy.candidates(
                db=db, days_old=days, keep_latest=keep, first=5
            )
            assert count == len(expected)
            assert total == sum(size[i] for i in expected)
            assert [e.id for e, _ in rows] == sorted(expected)[:5]
            assert all(b == size[e.id] for e, b in rows if e.id is not None)
    # The data exercises each part of the rule: keeping more, or only older ones, leaves less.
    assert sizes[(0, 0)] > sizes[(1, 0)] > sizes[(3, 0)] > 0
    assert sizes[(1, 0)] > sizes[(1, 60)] > 0

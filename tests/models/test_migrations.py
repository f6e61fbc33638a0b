"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from models.db import Database
from models.migrate import upgrade


async def test_migrated_schema_matches_the_models(db: Database) -> None:
    def diff(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_op_counts_are_backfilled_along_each_versions_history(tmp_path: Path) -> None:
    """0010 gives every existing version the number of ops it renders: its parent's plus its
    own, through reverts, which add none."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        await upgrade(db, "0009")
        old = "2026-01-01 00:00:00"
        async with db.engine.begin() as conn:
            for sql in (
                "INSERT INTO users (id, name, is_admin, token_hash, token_issued_at, created_at)"
                " VALUES (1, 'u', false, 'x', :at, :at)",
                "INSERT INTO blobs (id, sha256, key, bytes, ref_count, created_at)"
                " VALUES (1, 'x', 'videos/x.mp4', 1, 1, :at)",
                "INSERT INTO videos (id, owner_id, blob_id, filename, format_name, duration,"
                " width, height, fps, video_codec, created_at)"
                " VALUES (1, 1, 1, 'x.mp4', 'mov', 10, 64, 48, 25, 'h264', :at)",
                "INSERT INTO projects (id, owner_id, name, source_video_id, current_version,"
                " created_at) VALUES (1, 1, 'a', 1, 4, :at), (2, 1, 'b', 1, 1, :at)",
            ):
                await conn.execute(text(sql), {"at": old})
            # Project 1: v1 adds 2 ops, v2 adds 3, v3 reverts to v1, v4 adds 1 on top of it.
            # Project 2: v1 adds 1.
            for project, number, parent in (
                (1, 0, None),
                (1, 1, 0),
                (1, 2, 1),
                (1, 3, 1),
                (1, 4, 3),
                (2, 0, None),
                (2, 1, 0),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO versions (project_id, number, parent, frame_width,"
                        " frame_height, frame_duration, ops_hash, created_at)"
                        " VALUES (:p, :n, :parent, 64, 48, 10, 'h', :at)"
                    ),
                    {"p": project, "n": number, "parent": parent, "at": old},
                )
            for project, version, count in ((1, 1, 2), (1, 2, 3), (1, 4, 1), (2, 1, 1)):
                for seq in range(count):
                    await conn.execute(
                        text(
                            "INSERT INTO edit_operations (project_id, version, seq, type,"
                            " params, created_at) VALUES (:p, :v, :s, 'flip', '{}', :at)"
                        ),
                        {"p": project, "v": version, "s": seq, "at": old},
                    )
        await upgrade(db)
        async with db.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT project_id, number, op_count FROM versions ORDER BY 1, 2")
            )
            counts = {(p, n): c for p, n, c in rows}
        assert counts == {
            (1, 0): 0,
            (1, 1): 2,
            (1, 2): 5,
            (1, 3): 2,
            (1, 4): 3,
            (2, 0): 0,
            (2, 1): 1,
        }
    finally:
        await db.dispose()


async def test_each_users_token_keeps_working_after_tokens_get_their_own_table(
    tmp_path: Path,
) -> None:
    """0012 moves every user's token to api_tokens, with its issue time and last use."""
    from resolvers.users import actor_for_token, hash_token, tokens_of

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        await upgrade(db, "0011")
        token = "eg_" + "t" * 43
        async with db.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (id, name, is_admin, token_hash, token_issued_at,"
                    " last_used_at, created_at) VALUES (7, 'old', true, :h, :at, :used, :at)"
                ),
                {
                    "h": hash_token(token),
                    "at": "2026-01-01 00:00:00",
                    "used": "2026-02-01 00:00:00",
                },
            )
        await upgrade(db)
        actor = await actor_for_token(db=db, token=token)
        assert actor is not None and (actor.id, actor.name, actor.is_admin) == (7, "old", True)
        [row] = await tokens_of(db=db, user_id=7)
        assert (row.label, row.created_at.year, row.created_at.month) == ("first token", 2026, 1)
    finally:
        await db.dispose()

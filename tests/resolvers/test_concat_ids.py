"""Concat ops store the appended video's row id; the API still shows and takes public ids."""

import hashlib
import os
import secrets
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import select

from editgraph.settings import Settings
from jobs.queue import ArqQueue
from jobs.runtime import Runtime
from models import keys
from models.db import Database, canonical_json
from models.migrate import upgrade
from models.store import MediaStore
from models.tables import EditOperation, Render, Version
from resolvers import ids, ops, renders
from resolvers.presets import PROXY
from resolvers.probe import probe
from resolvers.users import TOKEN_PREFIX, hash_token
from tests.helpers import measure
from tests.helpers.api import Api, running
from tests.helpers.db import POSTGRES_URL
from tests.helpers.render_job import rendered, runtime

TOKEN = TOKEN_PREFIX + "alice-" + "t" * 40
OPS_OF = """query($p: ID!) { project(id: $p) { currentVersion ops { type params }
  version(number: 1) { ops { type params } } } }"""
APPEND = """mutation($p: ID!, $ops: [OpInput!]!) { appendOps(projectId: $p, ops: $ops) {
  __typename ... on OpsAppended { version { number ops { type params } } }
  ... on InvalidOps { errors { index field message } } } }"""
REVERT = """mutation($p: ID!, $v: Int!) { revertToVersion(projectId: $p, version: $v) {
  __typename ... on OpsAppended { version { number } proxy { id } } } }"""
UPLOAD = (
    '{"query": "mutation($f: Upload!) { uploadVideo(file: $f) { ... on VideoUploaded '
    '{ video { id } } } }", "variables": {"f": null}}'
)


async def uploaded(api: Api, token: str, path: Path) -> str:
    with path.open("rb") as fh:
        response = await api.client.post(
            "/graphql",
            data={"operations": UPLOAD, "map": '{"0": ["variables.f"]}'},
            files={"0": (path.name, fh, "video/mp4")},
            headers={"Authorization": f"Bearer {token}"},
        )
    video_id: str = response.json()["data"]["uploadVideo"]["video"]["id"]
    return video_id


async def rendered_by_id(rt: Runtime, render_id: int) -> Render:
    """Run the render job of that row once; the row as it ended, its file on disk."""
    async with rt.db.read() as session:
        job = await session.get(Render, render_id)
    assert job is not None
    row = await rendered(rt, job)
    assert (row.status, row.error) == ("done", None), row
    return row


async def test_a_concat_is_stored_by_row_id_and_shown_by_public_id(
    settings: Settings, db: Database, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    async with running(settings, db) as api:
        source = await uploaded(api, alice, media["clip"])
        other = await uploaded(api, alice, media["other"])
        created = await api.data(
            alice,
            'mutation($v: ID!) { createProject(videoId: $v, name: "c") '
            "{ ... on ProjectCreated { project { id } } } }",
            {"v": source},
        )
        pid = created["createProject"]["project"]["id"]
        appended = await api.data(
            alice, APPEND, {"p": pid, "ops": [{"concat": {"videoId": other}}]}
        )
        shown = [{"type": "concat", "params": {"videoId": other}}]
        assert appended["appendOps"]["version"]["ops"] == shown
        project = (await api.data(alice, OPS_OF, {"p": pid}))["project"]
        assert project["ops"] == project["version"]["ops"] == shown
        # The op vocabulary still describes the id a client sends: a string.
        types = await api.data(alice, "{ opTypes { name paramsSchema } }")
        [concat] = [t for t in types["opTypes"] if t["name"] == "concat"]
        assert concat["paramsSchema"]["properties"]["videoId"]["type"] == "string"
        # An id of another kind, or none at all, names no video.
        for wrong in (ids.encode("Project", ids.decode(other, "Video")), "nonsense"):
            refused = await api.data(
                alice, APPEND, {"p": pid, "ops": [{"concat": {"videoId": wrong}}]}
            )
            assert refused["appendOps"]["errors"][0]["field"] == "videoId"
    async with db.read() as session:
        row = (await session.exec(select(EditOperation))).one()
    assert row.params == {"videoId": ids.decode(other, "Video")} == {"videoId": row.video_id}
    assert other not in canonical_json(row.params)


# --- the migration of rows written before 0006 ---------------------------------------------


@pytest.fixture
async def db_at_0005(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A database of its own, migrated up to revision 0005 only."""
    if backend == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
        await upgrade(database, "0005")
        yield database
        await database.dispose()
        return
    if not POSTGRES_URL:
        pytest.skip("EDITGRAPH_TEST_POSTGRES_URL is not set")
    admin_url = make_url(POSTGRES_URL)
    name = f"editgraph_0005_{os.getpid()}_{secrets.token_hex(3)}"
    admin = Database(admin_url.render_as_string(hide_password=False))

    async def run(sql: str) -> None:
        async with admin.engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(sa.text(sql))

    await run(f'CREATE DATABASE "{name}"')
    database = Database(admin_url.set(database=name).render_as_string(hide_password=False))
    try:
        await upgrade(database, "0005")
        yield database
    finally:
        await database.dispose()
        await run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


_TYPES: list[tuple[type, Any]] = [
    (bool, sa.Boolean),
    (int, sa.Integer),
    (float, sa.Float),
    (str, sa.String),
    (dict, sa.JSON),
    (datetime, sa.DateTime(timezone=True)),
]


async def insert(conn: AsyncConnection, table: str, **values: Any) -> None:
    """One row written as the schema of 0005 has it (no model of today is involved)."""
    values = {k: v for k, v in values.items() if v is not None}
    columns = [
        sa.column(k, next(t for py, t in _TYPES if isinstance(v, py))) for k, v in values.items()
    ]
    await conn.execute(sa.insert(sa.table(table, *columns)).values(**values))


def stored(store: MediaStore, path: Path, extension: str) -> tuple[str, int]:
    """Copy a source into the store where an upload puts it: (sha256, bytes)."""
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    shutil.copyfile(path, store.path(keys.source(sha, extension)))
    return sha, path.stat().st_size


async def old_video(conn: AsyncConnection, store: MediaStore, row_id: int, path: Path) -> str:
    """A source video, its blob and its file, as an upload before 0006 left them."""
    facts = await probe(path)
    sha, size = stored(store, path, facts.extension)
    key = keys.source(sha, facts.extension)
    now = datetime.now(UTC)
    await insert(
        conn,
        "blobs",
        id=row_id,
        sha256=sha,
        key=key,
        bytes=size,
        ref_count=1,
        created_at=now,
    )
    await insert(
        conn,
        "videos",
        id=row_id,
        owner_id=1,
        blob_id=row_id,
        filename=path.name,
        format_name=facts.demuxer,
        duration=facts.duration,
        width=facts.width,
        height=facts.height,
        fps=facts.fps,
        video_codec=facts.video_codec,
        audio_codec=facts.audio_codec,
        created_at=now,
    )
    return sha


async def test_the_migration_rewrites_old_concat_rows_which_still_render(
    db_at_0005: Database,
    settings: Settings,
    queue: ArqQueue,
    media: dict[str, Path],
) -> None:
    db, store = db_at_0005, MediaStore(settings.media_root)
    store.ensure_layout()
    public = ids.encode("Video", 2)
    old_params = {"videoId": public}  # what appendOps stored before 0006
    old_hash = ops.chain_hash(ops.ROOT_HASH, [{"type": "concat", "params": old_params}])
    now = datetime.now(UTC)
    async with db.engine.begin() as conn:
        await insert(
            conn,
            "users",
            id=1,
            name="alice",
            is_admin=False,
            token_hash=hash_token(TOKEN),
            created_at=now,
            token_issued_at=now,
        )
        source_sha = await old_video(conn, store, 1, media["clip"])  # 2 s
        await old_video(conn, store, 2, media["other"])  # 3 s
        await insert(
            conn,
            "projects",
            id=1,
            owner_id=1,
            name="old",
            source_video_id=1,
            current_version=1,
            created_at=now,
        )
        for number, parent, ops_hash, duration in (
            (0, None, ops.ROOT_HASH, 2.0),
            (1, 0, old_hash, 5.0),
        ):
            await insert(
                conn,
                "versions",
                id=number + 1,
                project_id=1,
                number=number,
                frame_width=160,
                frame_height=120,
                frame_duration=duration,
                ops_hash=ops_hash,
                created_at=now,
                parent=parent,
            )
        await insert(
            conn,
            "edit_operations",
            id=1,
            project_id=1,
            version=1,
            seq=0,
            type="concat",
            params=old_params,
            video_id=2,
            created_at=now,
        )
        # The version's proxy was queued, keyed by the hash as it was computed then.
        await insert(
            conn,
            "renders",
            id=1,
            project_id=1,
            kind="proxy",
            version=1,
            preset="proxy",
            status="queued",
            progress=0.0,
            content_key=renders.content_key(source_sha, old_hash, PROXY),
            job_id="proxy:1:1",
            attempts=0,
            created_at=now,
        )
        if not db.is_sqlite:
            for table in (
                "users",
                "blobs",
                "videos",
                "projects",
                "versions",
                "edit_operations",
                "renders",
            ):
                await conn.execute(
                    sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 10)")
                )

    await upgrade(db)

    async with db.read() as session:
        row = await session.get(EditOperation, 1)
        version = (await session.exec(select(Version).where(Version.number == 1))).one()
    assert row is not None and row.params == {"videoId": 2}
    # Hashes name the same edits as before: render keys built from them stay valid.
    assert version.ops_hash == old_hash

    rt = runtime(db, queue, store)
    # The proxy queued before the migration renders from the rewritten op.
    first = await rendered_by_id(rt, 1)
    assert first.output_key is not None
    assert measure.duration(store.path(first.output_key)) == pytest.approx(2 + 3, abs=0.2)
    async with running(settings, db) as api:
        pid = ids.encode("Project", 1)
        project = (await api.data(TOKEN, OPS_OF, {"p": pid}))["project"]
        shown = [{"type": "concat", "params": {"videoId": public}}]
        assert project["ops"] == project["version"]["ops"] == shown
        trim = [{"trim": {"start": 0, "end": 1}}]
        assert (await api.data(TOKEN, APPEND, {"p": pid, "ops": trim}))["appendOps"]["version"]
        reverted = (await api.data(TOKEN, REVERT, {"p": pid, "v": 1}))["revertToVersion"]
    assert reverted["version"]["number"] == 3
    # Undo to the migrated version reuses its proxy: same content key, same file.
    again = await rendered_by_id(rt, ids.decode(reverted["proxy"]["id"], "Render"))
    assert again.content_key == first.content_key
    assert again.output_key is not None
    assert measure.duration(store.path(again.output_key)) == pytest.approx(2 + 3, abs=0.2)

"""Fixtures over the real things: SQLite and PostgreSQL, a throwaway Redis, ffmpeg media."""

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from editgraph.redis_embed import EmbeddedRedis
from editgraph.settings import Settings
from jobs.queue import ArqQueue, connect
from models.db import Database
from models.migrate import upgrade
from models.store import MediaStore
from resolvers.users import Actor, create_user
from tests.helpers.api import Api, AppFactory, changed, running
from tests.helpers.db import BACKENDS, POSTGRES_URL
from tests.helpers.media import make_hostile, make_video
from tests.helpers.s3 import CREDENTIALS, REGION, STORAGES, Endpoint, moto_endpoint

T = TypeVar("T")


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Sample sources shared by the whole run (read-only)."""
    folder = tmp_path_factory.mktemp("media")
    return {
        "clip": make_video(folder / "clip.mp4", seconds=2),
        "other": make_video(folder / "other.mp4", seconds=3, size="128x96", pattern="smptebars"),
        "silent": make_video(folder / "silent.mp4", seconds=1, audio=False, pattern="rgbtestsrc"),
    }


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files every upload must refuse."""
    return make_hostile(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once keeps the suite fast)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"

    async def migrate() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        await upgrade(db)
        await db.dispose()

    run_async(migrate)
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, migrated once and dropped at the end."""
    if not POSTGRES_URL:
        pytest.skip("EDITGRAPH_TEST_POSTGRES_URL is not set")
    name = f"editgraph_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin_url = make_url(POSTGRES_URL)
    test_url = admin_url.set(database=name).render_as_string(hide_password=False)

    async def admin(sql: str) -> None:
        db = Database(admin_url.render_as_string(hide_password=False))
        async with db.engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(text(sql))
        await db.dispose()

    async def migrate() -> None:
        db = Database(test_url)
        await upgrade(db)
        await db.dispose()

    run_async(lambda: admin(f'CREATE DATABASE "{name}"'))
    try:
        run_async(migrate)
        yield test_url
    finally:
        run_async(lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test that uses the database runs on SQLite and on PostgreSQL."""
    return str(request.param)


@pytest.fixture
async def db(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Database]:
    """An empty, migrated database of the requested backend."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "editgraph.db"
        shutil.copyfile(template, path)
        database = Database(f"sqlite+aiosqlite:///{path}")
    else:
        database = Database(request.getfixturevalue("postgres_database"))
        tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
        async with database.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """An S3 endpoint on loopback (moto's server) for this test process."""
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    with moto_endpoint() as endpoint:
        yield endpoint


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``both_storages`` that uses the media store runs on each backend."""
    if "storage" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_storages"
    ):
        metafunc.parametrize("storage", STORAGES)


@pytest.fixture
def storage() -> str:
    """Where media lives: the local media root, unless the test is marked both_storages."""
    return "local"


@pytest.fixture
def store(storage: str, tmp_path: Path, request: pytest.FixtureRequest) -> MediaStore:
    """An empty media store: a media root in the seed's layout, or a fresh bucket."""
    if storage == "s3":
        endpoint: Endpoint = request.getfixturevalue("s3")
        return endpoint.store(endpoint.new_bucket(), tmp_path / "cache")
    media_store = MediaStore(tmp_path / "uploads")
    media_store.ensure_layout()
    return media_store


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server on a free port: no shared Redis is touched."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
async def alice(db: Database) -> Actor:
    user, _ = await create_user(db=db, name="alice")
    return Actor.of(user)


@pytest.fixture
async def bob(db: Database) -> Actor:
    user, _ = await create_user(db=db, name="bob")
    return Actor.of(user)


@pytest.fixture
def settings(
    tmp_path: Path, redis_url: str, storage: str, request: pytest.FixtureRequest
) -> Settings:
    """Settings of a test server: its own media root (or bucket), the throwaway Redis, and
    render rate limits out of the way (the Redis outlives a test; tests of the limits set
    their own)."""
    where: dict[str, Any] = {"media_root": tmp_path / "uploads"}
    if storage == "s3":
        endpoint: Endpoint = request.getfixturevalue("s3")
        bucket = endpoint.new_bucket()
        where |= {
            "storage_url": f"s3://{bucket}",
            "s3_endpoint_url": endpoint.url,
            "s3_region": REGION,
            "cache_dir": tmp_path / "cache",
        }
    return Settings(
        env="test",
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        rate_proxies=1_000_000,
        rate_exports=1_000_000,
        **where,
    )


@pytest.fixture
def make_api(settings: Settings, db: Database) -> AppFactory:
    """The one way tests build the app: ``async with make_api(**changes) as api`` runs it
    over the test database with the test's settings, changed by keyword (or other settings
    given whole); ``live=True`` serves it with uvicorn on a free port (``api.base``)."""

    def make(
        chosen: Settings | None = None, /, *, live: bool = False, **changes: Any
    ) -> AbstractAsyncContextManager[Api]:
        return running(changed(chosen or settings, **changes), db, live=live)

    return make


@pytest.fixture
async def api(make_api: AppFactory) -> AsyncIterator[Api]:
    """The real Starlette app over the test database, called in-process over ASGI."""
    async with make_api() as client:
        yield client


@pytest.fixture
async def tokens(db: Database) -> dict[str, str]:
    """Bearer tokens of three accounts: alice, bob and an admin."""
    result: dict[str, str] = {}
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        _, result[name] = await create_user(db=db, name=name, is_admin=admin)
    return result


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[ArqQueue]:
    """The real arq queue on the throwaway Redis, emptied for each test (it is ours alone)."""
    pool = connect(redis_url)
    await pool.flushdb()
    arq_queue = ArqQueue(pool)
    try:
        yield arq_queue
    finally:
        await arq_queue.close()

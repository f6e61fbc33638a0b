"""Fixtures of the end-to-end tests: a private Redis, shared settings, the in-process app."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from bench.common import serve
from editgraph.app import create_app
from editgraph.redis_embed import EmbeddedRedis
from editgraph.settings import Settings
from models.db import Database
from tests.conftest import Api
from tests.media import make_video


def settings_of(env: dict[str, str]) -> Settings:
    """The Settings an ``EDITGRAPH_*`` environment describes."""
    return Settings.model_validate(
        {k.removeprefix("EDITGRAPH_").lower(): v for k, v in env.items()}
    )


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test alone, so it can be restarted and nothing leaks between tests."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def env(db: Database, redis_server: EmbeddedRedis, tmp_path: Path) -> dict[str, str]:
    """Settings shared by the test's app and its worker process."""
    return {
        "EDITGRAPH_DATABASE_URL": db.url,
        "EDITGRAPH_REDIS_URL": redis_server.url,
        "EDITGRAPH_MEDIA_ROOT": str(tmp_path / "uploads"),
        "EDITGRAPH_RECONCILE_EVERY_S": "1",
        "EDITGRAPH_RENDER_LEASE_S": "3",
        "EDITGRAPH_RENDER_TIMEOUT_S": "60",
        "EDITGRAPH_EXPORT_X264_PRESET": "ultrafast",
        "EDITGRAPH_ENV": "test",
    }


@pytest.fixture
async def app_api(env: dict[str, str], db: Database) -> AsyncIterator[Api]:
    app = create_app(settings_of(env), db=db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield Api(client, app)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Long and large enough that an export with a heavy blur takes seconds to render."""
    folder = tmp_path_factory.mktemp("long")
    return make_video(folder / "long.mp4", seconds=20, size="1280x720", rate=30)


@pytest.fixture
async def live(env: dict[str, str], db: Database) -> AsyncIterator[tuple[Api, str]]:
    """The app behind a real uvicorn server on a free port: (API client, base URL)."""
    app = create_app(settings_of(env), db=db)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield Api(client, app), base

"""Fixtures of the end-to-end tests: a private Redis, settings shared with worker processes,
the app (in-process or served), and a worker in this process."""

from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from arq import Worker

from editgraph.redis_embed import EmbeddedRedis
from editgraph.settings import Settings
from models.db import Database
from tests.helpers.api import Api, AppFactory, changed, settings_of
from tests.helpers.media import make_video
from tests.helpers.s3 import Endpoint, bucket_env
from tests.helpers.worker import WorkerFactory, worker_in_process


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test alone, so it can be restarted and nothing leaks between tests."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def env(
    db: Database,
    redis_server: EmbeddedRedis,
    tmp_path: Path,
    storage: str,
    request: pytest.FixtureRequest,
) -> dict[str, str]:
    """Settings shared by the test's app and its worker, in this process or another."""
    found = {
        "EDITGRAPH_DATABASE_URL": db.url,
        "EDITGRAPH_REDIS_URL": redis_server.url,
        "EDITGRAPH_MEDIA_ROOT": str(tmp_path / "uploads"),
        "EDITGRAPH_RECONCILE_EVERY_S": "1",
        "EDITGRAPH_RENDER_LEASE_S": "3",
        "EDITGRAPH_RENDER_TIMEOUT_S": "60",
        "EDITGRAPH_EXPORT_X264_PRESET": "ultrafast",
        "EDITGRAPH_ENV": "test",
    }
    if storage == "s3":
        endpoint: Endpoint = request.getfixturevalue("s3")
        found |= bucket_env(endpoint, endpoint.new_bucket(), tmp_path / "cache")
    return found


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    """The settings ``env`` describes: the app, worker processes and in-process workers agree."""
    return settings_of(env)


@pytest.fixture
async def app_api(make_api: AppFactory) -> AsyncIterator[Api]:
    """The app over ASGI in this process."""
    async with make_api() as api:
        yield api


@pytest.fixture
async def live(make_api: AppFactory) -> AsyncIterator[tuple[Api, str]]:
    """The app behind a real uvicorn server on a free port: (API client, base URL)."""
    async with make_api(live=True) as api:
        yield api, api.base


@pytest.fixture
def run_worker(settings: Settings) -> WorkerFactory:
    """The render worker of `editgraph worker`, in this process, over the test's settings
    changed by keyword (e.g. ``render_timeout_s=1.5``). Tests that kill or restart the
    worker, or start the command line, use ``worker_process`` instead."""

    def start(**changes: Any) -> AbstractAsyncContextManager[Worker]:
        return worker_in_process(changed(settings, **changes))

    return start


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Long and large enough that an export with a heavy blur takes seconds to render
    (read-only, made once for the run)."""
    folder = tmp_path_factory.mktemp("long")
    return make_video(folder / "long.mp4", seconds=20, size="1280x720", rate=30)

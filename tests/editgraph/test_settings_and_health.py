"""Settings refuse unsafe production values; /healthz reports what does not answer."""

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from editgraph.redis_embed import free_port
from editgraph.settings import Settings
from jobs.runtime import WorkerSettings
from models.db import Database
from tests.helpers.api import Api, AppFactory


def test_production_refuses_the_default_secret_and_graphiql(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDITGRAPH_ENV", "production")
    with pytest.raises(ValidationError, match="EDITGRAPH_SECRET_KEY"):
        Settings()
    monkeypatch.setenv("EDITGRAPH_SECRET_KEY", "x" * 40)
    monkeypatch.setenv("EDITGRAPH_ALLOWED_ORIGINS", '["https://app.example.com"]')
    assert Settings().graphiql_enabled is False
    monkeypatch.setenv("EDITGRAPH_GRAPHIQL", "true")
    with pytest.raises(ValidationError, match="GRAPHIQL"):
        Settings()


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EDITGRAPH_MEDIA_ROOT", str(tmp_path / "media"))
    monkeypatch.setenv("EDITGRAPH_MAX_UPLOAD_BYTES", "1000")
    monkeypatch.setenv("EDITGRAPH_REDIS_URL", "redis://127.0.0.1:1/0")
    settings = Settings()
    assert settings.media_root == tmp_path / "media"
    assert settings.max_upload_bytes == 1000
    assert settings.redis_url == "redis://127.0.0.1:1/0"
    assert Settings.model_fields["max_upload_bytes"].default == 4 * 1024**3
    assert Settings.model_fields["database_url"].default == "sqlite+aiosqlite:///data/editgraph.db"


async def test_healthz_is_200_when_both_answer(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


async def test_healthz_is_503_when_redis_does_not_answer(make_api: AppFactory) -> None:
    async with make_api(redis_url=f"redis://127.0.0.1:{free_port()}/0") as api:
        response = await api.client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok" and body["redis"].startswith("error")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(db: Database) -> None:
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 30000
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1


def test_a_worker_reads_the_same_settings_the_server_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDITGRAPH_RENDER_TIMEOUT_S", "42")
    monkeypatch.setenv("EDITGRAPH_RENDER_CONCURRENCY", "3")
    settings = Settings()
    # Each worker setting is defined once (jobs.runtime.WorkerSettings) and the server's
    # Settings is one: no copy of defaults, no field copied by hand.
    assert isinstance(settings, WorkerSettings)
    assert (settings.render_timeout_s, settings.render_concurrency) == (42.0, 3)
    assert set(WorkerSettings.model_fields) <= set(Settings.model_fields)
    for name, field in WorkerSettings.model_fields.items():
        assert Settings.model_fields[name].default == field.default, name
    monkeypatch.setenv("EDITGRAPH_RENDER_CONCURRENCY", "0")
    with pytest.raises(ValueError, match="render_concurrency"):
        Settings()

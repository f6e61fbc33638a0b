"""A web app on its own origin calls the API: CORS preflights and headers, websockets from the
same origins, the setting's two spellings, and absolute media links under a public URL."""

import json
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError
from websockets.exceptions import InvalidStatus

from editgraph.settings import Settings
from tests.helpers.api import AppFactory
from tests.helpers.websocket import raw_socket

VITE = "http://localhost:5173"
APP = "https://app.example"
# Origins are decided before any query runs: one database is enough.
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


def test_origins_are_read_as_json_or_as_a_comma_separated_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDITGRAPH_ALLOWED_ORIGINS", "https://app.example")
    assert Settings().allowed_origins == [APP]
    monkeypatch.setenv(
        "EDITGRAPH_ALLOWED_ORIGINS", " https://App.Example:443/ , http://a.test:8080"
    )
    assert Settings().allowed_origins == [APP, "http://a.test:8080"]
    monkeypatch.setenv("EDITGRAPH_ALLOWED_ORIGINS", '["https://app.example"]')
    assert Settings().allowed_origins == [APP]
    monkeypatch.setenv("EDITGRAPH_ALLOWED_ORIGINS", "app.example")
    with pytest.raises(ValidationError, match="is not an origin such as"):
        Settings()
    monkeypatch.setenv("EDITGRAPH_ALLOWED_ORIGINS", "https://app.example/path")
    with pytest.raises(ValidationError, match="is not an origin such as"):
        Settings()


@SQLITE_ONLY
async def test_a_dev_server_on_localhost_may_call_by_default(make_api: AppFactory) -> None:
    async with make_api() as api:
        answer = await api.client.options("/graphql", headers=preflight(VITE))
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == VITE
        assert "POST" in answer.headers["access-control-allow-methods"]
        assert "authorization" in answer.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in answer.headers
        refused = await api.client.options("/graphql", headers=preflight(APP))
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        # The actual request carries the header a browser checks, and what it may read.
        response = await api.client.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"Origin": VITE}
        )
        assert response.headers["access-control-allow-origin"] == VITE
        assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


@SQLITE_ONLY
async def test_listed_origins_replace_the_development_default(make_api: AppFactory) -> None:
    async with make_api(allowed_origins=APP) as api:
        allowed = await api.client.options("/graphql", headers=preflight(APP))
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == APP
        local = await api.client.options("/graphql", headers=preflight(VITE))
        assert local.status_code == 400


@SQLITE_ONLY
async def test_websockets_open_from_the_origins_cors_allows(
    make_api: AppFactory, tokens: dict[str, str]
) -> None:
    payload = {"authorization": f"Bearer {tokens['alice']}"}
    async with make_api(live=True) as api:
        async with raw_socket(api.base, payload, origin="http://127.0.0.1:5173") as ws:
            assert json.loads(await ws.recv())["type"] == "connection_ack"
        with pytest.raises(InvalidStatus) as refused:
            async with raw_socket(api.base, payload, origin=APP):
                pass
        assert refused.value.response.status_code == 403


@SQLITE_ONLY
async def test_media_links_are_absolute_under_the_public_url(
    make_api: AppFactory, settings: Settings
) -> None:
    key = "export/7/v3_final.mp4"
    path = settings.media_root / key
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0\0\0\x18ftypmp42" + b"x" * 100)
    async with make_api(public_url="https://api.example/") as api:
        link = api.services.link(key)
        assert link.startswith("https://api.example/media/export/7/v3_final.mp4?exp=")
        parts = urlsplit(link)
        served = await api.client.get(f"{parts.path}?{parts.query}")
        assert served.content == path.read_bytes()
    with pytest.raises(ValidationError, match="is not a URL"):
        Settings(public_url="api.example")

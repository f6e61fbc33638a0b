"""Media in an S3 bucket end to end: uploads, proxies, exports and links with no media
folder at all, and what users see when the bucket stops answering for a while."""

import asyncio
import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from moto.server import ThreadedMotoServer
from sqlmodel import select

from models.states import RenderKind
from models.tables import Render, Video
from resolvers import ids
from tests.helpers import measure
from tests.helpers.api import (
    APPEND,
    CREATE,
    Api,
    AppFactory,
    code_of,
    project,
    settings_of,
    upload,
)
from tests.helpers.polling import until
from tests.helpers.s3 import Endpoint, bucket_env
from tests.helpers.worker import WorkerFactory, worker_in_process

pytestmark = pytest.mark.slow
EXPORT = """mutation($p: ID!) { requestExport(projectId: $p) {
  ... on ExportQueued { export { id status } } } }"""


@pytest.fixture
def storage() -> str:
    """Every test here keeps its media in a bucket."""
    return "s3"


def bucket_of(env: dict[str, str]) -> str:
    return env["EDITGRAPH_STORAGE_URL"].removeprefix("s3://")


async def proxy_at(api: Api, token: str, pid: str, version: int) -> dict[str, Any] | None:
    latest = (await project(api, token, pid))["latestProxy"]
    ok = latest and latest["version"] == version and latest["status"] == "DONE"
    return latest if ok else None


async def fetch(url: str, path: Path, **headers: str) -> httpx.Response:
    """GET a presigned link from the bucket itself (not through editgraph)."""
    async with httpx.AsyncClient(timeout=30) as outside:
        answer = await outside.get(url, headers=headers)
    if not headers:
        await asyncio.to_thread(path.write_bytes, answer.content)
    return answer


async def test_uploads_renders_and_links_keep_every_file_in_the_bucket(
    app_api: Api,
    tokens: dict[str, str],
    media: dict[str, Path],
    env: dict[str, str],
    run_worker: WorkerFactory,
    s3: Endpoint,
    tmp_path: Path,
) -> None:
    api, alice, bob = app_api, tokens["alice"], tokens["bob"]
    bucket = bucket_of(env)
    # The same bytes from two users: stored once, under their SHA-256.
    video = (await upload(api, alice, media["clip"]))["video"]
    await upload(api, bob, media["clip"])
    sha = hashlib.sha256(media["clip"].read_bytes()).hexdigest()
    assert [k for k in s3.keys(bucket, "videos/") if not k.endswith("_480p.mp4")] == [
        f"videos/{sha}.mp4"
    ]
    created = await api.data(alice, CREATE, {"v": video["id"], "name": "in a bucket"})
    pid = created["createProject"]["project"]["id"]
    number = ids.decode(pid, "Project")
    async with run_worker():
        v0 = await until(lambda: proxy_at(api, alice, pid, 0), what="the first proxy")
        edit = [{"brightness": {"brightness": 20}}]
        assert (await api.data(alice, APPEND, {"p": pid, "ops": edit}))["appendOps"][
            "__typename"
        ] == "OpsAppended"
        v1 = await until(lambda: proxy_at(api, alice, pid, 1), what="the proxy of version 1")
        await api.data(alice, EXPORT, {"p": pid})

        async def exported() -> dict[str, Any] | None:
            latest = (await project(api, alice, pid))["latestExport"]
            return latest if latest and latest["status"] == "DONE" else None

        export = await until(exported, what="the export")

    # Links are presigned by the bucket, and they seek (Range).
    for link in (v0["url"], v1["url"], export["url"]):
        assert link.startswith(s3.url) and "X-Amz-Signature=" in link
    plain, bright, final = tmp_path / "v0.mp4", tmp_path / "v1.mp4", tmp_path / "final.mp4"
    assert (await fetch(v0["url"], plain)).status_code == 200
    assert (await fetch(v1["url"], bright)).status_code == 200
    assert (await fetch(export["url"], final)).status_code == 200
    part = await fetch(v1["url"], bright, Range="bytes=100-199")
    assert part.status_code == 206 and part.content == bright.read_bytes()[100:200]
    # What a person would check: brighter after the edit, the export whole.
    assert bright.stat().st_size == v1["bytes"]
    assert (
        measure.mean(measure.signal(bright, "YAVG"))
        > measure.mean(measure.signal(plain, "YAVG")) + 20
    )
    assert measure.duration(final) == pytest.approx(2.0, abs=0.15)
    assert measure.size(final) == (160, 120)

    stored = s3.keys(bucket)
    assert f"proxy/{number}/v1_proxy.mp4" in stored
    assert f"export/{number}/v1_final.mp4" in stored
    assert any(k.startswith("segments/") for k in stored)
    # Nothing is left under temp keys, and no media folder was used at all.
    assert [k for k in stored if k.startswith("temp/")] == []
    assert not await asyncio.to_thread(files_under, Path(env["EDITGRAPH_MEDIA_ROOT"]))


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def stoppable() -> Iterator[tuple[ThreadedMotoServer, Endpoint]]:
    """An S3 endpoint of this test alone, on a port it can be started again on (moto keeps
    its buckets in the process, so a restarted endpoint serves the same objects)."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield server, Endpoint(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


async def test_a_stopped_bucket_fails_uploads_cleanly_and_renders_wait_for_it(
    make_api: AppFactory,
    tokens: dict[str, str],
    media: dict[str, Path],
    env: dict[str, str],
    stoppable: tuple[ThreadedMotoServer, Endpoint],
    tmp_path: Path,
) -> None:
    server, endpoint = stoppable
    bucket = endpoint.new_bucket()
    settings = settings_of({**env, **bucket_env(endpoint, bucket, tmp_path / "cache-2")})
    alice = tokens["alice"]
    async with make_api(settings) as api, worker_in_process(settings):
        video = (await upload(api, alice, media["clip"]))["video"]
        created = await api.data(alice, CREATE, {"v": video["id"], "name": "outage"})
        pid = created["createProject"]["project"]["id"]
        await until(lambda: proxy_at(api, alice, pid, 0), what="the first proxy")
        server.stop()  # the bucket stops answering
        try:
            refused = await api.upload(alice, media["other"])
            body = refused.json()
            assert code_of(body) == "STORAGE_UNAVAILABLE", body
            assert "try again" in body["errors"][0]["message"]
            assert str(tmp_path) not in refused.text and "127.0.0.1" not in refused.text
            # Nothing of it was kept: no video, nothing staged.
            async with api.services.db.read() as session:
                names = (await session.exec(select(Video.filename))).all()
            assert names == ["clip.mp4"]
            assert list((tmp_path / "cache-2" / "temp").glob("upload-*")) == []
            # An edit still saves (the database holds it); its proxy fails to reach the
            # bucket and is retried.
            edit = [{"brightness": {"brightness": 10}}]
            saved = await api.data(alice, APPEND, {"p": pid, "ops": edit})
            assert saved["appendOps"]["__typename"] == "OpsAppended"

            async def tried() -> bool:
                async with api.services.db.read() as session:
                    attempts = (
                        await session.exec(
                            select(Render.attempts).where(
                                Render.kind == RenderKind.PROXY, Render.version == 1
                            )
                        )
                    ).first()
                return bool(attempts)

            await until(tried, what="a proxy attempt while the bucket is down")
            await asyncio.sleep(1)
        finally:
            server.start()  # a few seconds later it is back
        v1 = await until(lambda: proxy_at(api, alice, pid, 1), what="the proxy after the outage")
        assert v1["error"] is None
    assert [k for k in endpoint.keys(bucket) if k.startswith("temp/")] == []

"""Rendering end to end: the API, a real worker process, real ffmpeg, a private Redis."""

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from editgraph.media import MediaSigner
from editgraph.redis_embed import EmbeddedRedis
from models import redis_keys
from resolvers import events, ids
from tests.helpers import measure
from tests.helpers.api import APPEND, CREATE, REVERT, Api, project, upload
from tests.helpers.db import SQLITE_ONLY
from tests.helpers.polling import until
from tests.helpers.processes import ffmpeg_children, no_ffmpeg_left, worker_process
from tests.helpers.renders import CANCEL, without_proxies
from tests.helpers.worker import WorkerFactory

pytestmark = pytest.mark.slow
EXPORT = """mutation($p: ID!, $v: Int) { requestExport(projectId: $p, version: $v) {
  __typename ... on ExportQueued { export { id version status } } ... on NotFound { message } } }"""


def media_root(env: dict[str, str]) -> Path:
    return Path(env["EDITGRAPH_MEDIA_ROOT"])


async def start_project(api: Api, token: str, source: Path) -> str:
    video = (await upload(api, token, source))["video"]["id"]
    created = await api.data(token, CREATE, {"v": video, "name": "render me"})
    project_id: str = created["createProject"]["project"]["id"]
    return project_id


async def export_done(api: Api, token: str, pid: str) -> dict[str, Any] | None:
    latest = (await project(api, token, pid))["latestExport"]
    return latest if latest and latest["status"] == "DONE" else None


@SQLITE_ONLY  # what ffmpeg makes of each edit (the lifecycle tests below run on both)
async def test_edits_render_proxies_and_exports(
    app_api: Api,
    tokens: dict[str, str],
    media: dict[str, Path],
    env: dict[str, str],
    run_worker: WorkerFactory,
) -> None:
    api, alice = app_api, tokens["alice"]
    root = media_root(env)
    async with run_worker():
        pid = await start_project(api, alice, media["clip"])
        number = ids.decode(pid, "Project")

        async def proxy_at(version: int) -> dict[str, Any] | None:
            latest = (await project(api, alice, pid))["latestProxy"]
            ok = latest and latest["version"] == version and latest["status"] == "DONE"
            return latest if ok else None

        v0 = await until(lambda: proxy_at(0), what="the first proxy")
        appended = (
            await api.data(
                alice,
                APPEND,
                {
                    "p": pid,
                    "ops": [{"gaussianBlur": {"radius": 5}}, {"brightness": {"brightness": 20}}],
                },
            )
        )["appendOps"]
        assert appended["__typename"] == "OpsAppended"
        v1 = await until(lambda: proxy_at(1), what="the proxy of version 1")
        proxy_file = root / f"proxy/{number}/v1_proxy.mp4"
        assert proxy_file.stat().st_size == v1["bytes"]
        assert (v1["width"], v1["height"]) == measure.size(proxy_file) == (160, 120)
        assert v1["durationSeconds"] == pytest.approx(2.0, abs=0.15)
        # Brighter than the unedited proxy, as a person would see.
        plain = measure.mean(measure.signal(root / f"proxy/{number}/v0_proxy.mp4", "YAVG"))
        assert measure.mean(measure.signal(proxy_file, "YAVG")) > plain + 20

        # The signed URL serves the file, with Range requests for seeking.
        whole = await api.client.get(v1["url"])
        assert whole.status_code == 200 and whole.content == proxy_file.read_bytes()
        part = await api.client.get(v1["url"], headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.content == proxy_file.read_bytes()[100:200]
        tampered = v1["url"].replace("v1_proxy", "v0_proxy")
        assert (await api.client.get(tampered)).status_code == 403
        signer = MediaSigner("editgraph-development-secret-change-me", 60)
        key = f"proxy/{number}/v1_proxy.mp4"
        expired = f"/media/{key}?exp=1000&sig={signer.signature(key, 1000)}"
        assert (await api.client.get(expired)).status_code == 403

        queued = (await api.data(alice, EXPORT, {"p": pid}))["requestExport"]["export"]
        assert queued["version"] == 1
        export = await until(lambda: export_done(api, alice, pid), what="the export")
        assert export["id"] == queued["id"] and export["latest"] is True
        final = root / f"export/{number}/v1_final.mp4"
        assert measure.size(final) == (160, 120)
        assert measure.duration(final) == pytest.approx(2.0, abs=0.15)
        again = (await api.data(alice, EXPORT, {"p": pid, "v": 1}))["requestExport"]["export"]
        assert again == {"id": export["id"], "version": 1, "status": "DONE"}

        # Reverting to version 0 reuses its finished proxy file instead of rendering again.
        await api.data(alice, REVERT, {"p": pid, "n": 0})
        await until(lambda: proxy_at(2), what="the proxy of the revert")
        reused = root / f"proxy/{number}/v2_proxy.mp4"
        assert reused.stat().st_ino == (root / f"proxy/{number}/v0_proxy.mp4").stat().st_ino
        assert v0["bytes"] == reused.stat().st_size
    assert list((root / "temp").iterdir()) == []


async def test_cancel_stops_ffmpeg_and_leaves_no_file(
    app_api: Api,
    tokens: dict[str, str],
    long_clip: Path,
    env: dict[str, str],
    run_worker: WorkerFactory,
) -> None:
    api, alice = app_api, tokens["alice"]
    pid = await start_project(api, alice, long_clip)
    await api.data(alice, APPEND, {"p": pid, "ops": [{"gaussianBlur": {"radius": 30}}]})
    await without_proxies(api, alice, pid)
    async with run_worker():
        export_id = (await api.data(alice, EXPORT, {"p": pid}))["requestExport"]["export"]["id"]

        async def running() -> dict[str, Any] | None:
            node = await api.data(
                alice,
                "query($id: ID!) { node(id: $id) { ... on Export { status progress render { id } } } }",
                {"id": export_id},
            )
            found: dict[str, Any] = node["node"]
            return found if found["status"] == "RUNNING" and found["progress"] > 0 else None

        state = await until(running, what="the export to make progress")
        own = f"render-{ids.decode(state['render']['id'], 'Render')}-"
        assert ffmpeg_children(rendering=own)
        result = (await api.data(alice, CANCEL, {"id": state["render"]["id"]}))["cancelRender"]
        assert result["render"]["status"] == "CANCELLED"

        async def stopped() -> bool:
            return not ffmpeg_children(rendering=own)

        await until(stopped, within=5, what="ffmpeg to be killed")
    root = media_root(env)
    assert not list((root / "export").rglob("*.mp4"))
    assert list((root / "temp").iterdir()) == []


async def test_a_timeout_fails_with_a_readable_error(
    app_api: Api,
    tokens: dict[str, str],
    long_clip: Path,
    env: dict[str, str],
    run_worker: WorkerFactory,
) -> None:
    api, alice = app_api, tokens["alice"]
    pid = await start_project(api, alice, long_clip)
    await api.data(alice, APPEND, {"p": pid, "ops": [{"gaussianBlur": {"radius": 30}}]})
    await without_proxies(api, alice, pid)
    async with run_worker(render_timeout_s=1.5, render_timeout_per_s=0):
        await api.data(alice, EXPORT, {"p": pid})

        async def failed() -> dict[str, Any] | None:
            exports = (await project(api, alice, pid))["exports"]
            return exports[0] if exports and exports[0]["status"] == "FAILED" else None

        await until(failed, what="the export to time out")
        node = await api.data(
            alice,
            "query($id: ID!) { node(id: $id) { ... on Export { render { error attempts } } } }",
            {"id": (await project(api, alice, pid))["exports"][0]["id"]},
        )
        render = node["node"]["render"]
        assert "took longer than 1.5 s" in render["error"]
        # It says which limit it hit and how to raise it.
        assert "EDITGRAPH_RENDER_TIMEOUT_S (1.5 s)" in render["error"]
        assert "EDITGRAPH_RENDER_TIMEOUT_PER_S (0 s)" in render["error"]
        assert render["attempts"] == 1
    assert no_ffmpeg_left(media_root(env))


async def test_a_permanent_failure_fails_once(
    app_api: Api,
    tokens: dict[str, str],
    media: dict[str, Path],
    env: dict[str, str],
    run_worker: WorkerFactory,
) -> None:
    api, alice = app_api, tokens["alice"]
    pid = await start_project(api, alice, media["other"])
    for original in (media_root(env) / "videos").glob("*.mp4"):
        original.unlink()  # exports read the original; without it nothing can be rendered
    async with run_worker():
        await api.data(alice, EXPORT, {"p": pid})

        async def failed() -> dict[str, Any] | None:
            exports = (await project(api, alice, pid))["exports"]
            return exports[0] if exports and exports[0]["status"] == "FAILED" else None

        export = await until(failed, what="the export to fail")
    node = await api.data(
        alice,
        "query($id: ID!) { node(id: $id) { ... on Export { render { error attempts } } } }",
        {"id": export["id"]},
    )
    assert node["node"]["render"]["attempts"] == 1
    assert "source video's file is missing" in node["node"]["render"]["error"]


async def test_a_killed_ffmpeg_is_retried(
    app_api: Api,
    tokens: dict[str, str],
    long_clip: Path,
    env: dict[str, str],
    run_worker: WorkerFactory,
) -> None:
    api, alice = app_api, tokens["alice"]
    pid = await start_project(api, alice, long_clip)
    await without_proxies(api, alice, pid)
    async with run_worker():
        queued = (await api.data(alice, EXPORT, {"p": pid}))["requestExport"]["export"]
        own = await render_files(api, alice, queued["id"])

        async def busy() -> bool:
            return bool(ffmpeg_children(rendering=own)) and bool(
                [e for e in (await project(api, alice, pid))["exports"] if e["status"] == "RUNNING"]
            )

        await until(busy, what="the export to start")
        for child in ffmpeg_children(rendering=own):
            child.send_signal(signal.SIGKILL)
        export = await until(lambda: export_done(api, alice, pid), what="the retried export")
    assert export["render"]["attempts"] == 2
    assert measure.duration(media_root(env) / export_key(pid)) == pytest.approx(20, abs=0.3)


async def render_files(api: Api, token: str, export_id: str) -> str:
    """What the temp files (and so the ffmpeg command line) of an export's render start with."""
    node = await api.data(
        token,
        "query($id: ID!) { node(id: $id) { ... on Export { render { id } } } }",
        {"id": export_id},
    )
    return f"render-{ids.decode(node['node']['render']['id'], 'Render')}-"


def export_key(pid: str, version: int = 0) -> str:
    return f"export/{ids.decode(pid, 'Project')}/v{version}_final.mp4"


async def test_worker_killed_mid_render_finishes_exactly_once_after_restart(
    app_api: Api,
    tokens: dict[str, str],
    long_clip: Path,
    env: dict[str, str],
    tmp_path: Path,
    redis_server: EmbeddedRedis,
) -> None:
    api, alice = app_api, tokens["alice"]
    pid = await start_project(api, alice, long_clip)
    await without_proxies(api, alice, pid)
    # One job at a time: the upload's 480p copy is made before the export starts, and the
    # kill stops the export alone.
    env = {**env, "EDITGRAPH_RENDER_CONCURRENCY": "1"}
    with worker_process(env, tmp_path / "worker-1.log") as worker:
        await api.data(alice, EXPORT, {"p": pid})

        async def midway() -> bool:
            exports = (await project(api, alice, pid))["exports"]
            return (
                bool(exports)
                and exports[0]["status"] == "RUNNING"
                and bool(ffmpeg_children(worker))
            )

        await until(midway, what="the export to start")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    with worker_process(env, tmp_path / "worker-2.log"):
        export = await until(lambda: export_done(api, alice, pid), what="the export after restart")
    assert export["render"]["attempts"] == 2
    root = media_root(env)
    assert [p.name for p in (root / "export").rglob("*.mp4")] == ["v0_final.mp4"]
    assert measure.duration(root / export_key(pid)) == pytest.approx(20, abs=0.3)
    assert list((root / "temp").iterdir()) == []
    # Exactly one "export complete" for it, however many attempts it took.
    client = redis_server_client(redis_server)
    entries = await client.xrange(redis_keys.events_stream(ids.decode(pid, "Project")))
    await client.aclose()
    kinds = [events.decode(i.decode(), e[b"e"]).kind for i, e in entries]
    completes = [k for k in kinds if k == "export_complete"]
    assert len(completes) == 1
    assert no_ffmpeg_left(media_root(env))


def redis_server_client(server: EmbeddedRedis) -> Any:
    import redis.asyncio

    return redis.asyncio.Redis.from_url(server.url)


async def test_a_redis_restart_between_commit_and_job_loses_no_render(
    app_api: Api,
    tokens: dict[str, str],
    media: dict[str, Path],
    redis_server: EmbeddedRedis,
    run_worker: WorkerFactory,
) -> None:
    api, alice = app_api, tokens["alice"]
    pid = await start_project(api, alice, media["clip"])
    await api.data(alice, APPEND, {"p": pid, "ops": [{"grayscale": True}]})
    # Redis keeps nothing on disk: a restart forgets every queued job.
    redis_server.stop()
    redis_server.start()
    async with run_worker():

        async def proxy_v1() -> bool:
            latest = (await project(api, alice, pid))["latestProxy"]
            return bool(latest) and latest["version"] == 1 and latest["status"] == "DONE"

        await until(proxy_v1, what="the proxy after the Redis restart")


async def test_a_proxy_superseded_before_it_starts_is_skipped(
    app_api: Api,
    tokens: dict[str, str],
    media: dict[str, Path],
    env: dict[str, str],
    run_worker: WorkerFactory,
) -> None:
    api, alice = app_api, tokens["alice"]
    pid = await start_project(api, alice, media["clip"])
    for level in (10, 20, 30):
        await api.data(alice, APPEND, {"p": pid, "ops": [{"brightness": {"brightness": level}}]})
    async with run_worker():

        async def settled() -> list[dict[str, Any]] | None:
            data = await api.data(
                alice,
                "query($id: ID!) { project(id: $id) { versions { nodes { number proxy { status error } } } } }",
                {"id": pid},
            )
            proxies = [v["proxy"] for v in data["project"]["versions"]["nodes"]]
            return proxies if all(p["status"] in ("DONE", "CANCELLED") for p in proxies) else None

        proxies = await until(settled, what="every proxy to settle")
    # Newest first: only the current version's proxy is rendered.
    assert [p["status"] for p in proxies] == ["DONE", "CANCELLED", "CANCELLED", "CANCELLED"]
    assert proxies[1]["error"] == "superseded by version 3"
    number = ids.decode(pid, "Project")
    # v3's file and the sound of its HLS playlist (stored once for every version whose
    # sound is the same, as here); nothing of the superseded versions.
    names = sorted(p.name for p in (media_root(env) / f"proxy/{number}").iterdir())
    assert names == ["v3_proxy.mp4"]
    sounds = list((media_root(env) / "proxy/sound").glob("*/*"))
    assert len(sounds) == 1 and (sounds[0] / "audio.m3u8").is_file()

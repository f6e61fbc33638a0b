"""A cluster on loopback: 2 servers and 3 workers over PostgreSQL, Redis and an S3 bucket,
with no media folder shared (or used) by anyone. Checked from the records, not timing."""

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import obstore
import pytest
from sqlmodel import col, select
from websockets.asyncio.client import ClientConnection

from editgraph.cluster import BUCKET, LOOPBACK_CREDENTIALS, Cluster
from models.bucket import s3_store
from models.db import Database
from models.states import RenderKind, RenderStatus
from models.tables import Project, Render
from resolvers import ids
from resolvers.users import create_user
from tests.helpers import measure
from tests.helpers.api import APPEND, CREATE
from tests.helpers.db import POSTGRES_ONLY
from tests.helpers.polling import until
from tests.helpers.websocket import raw_socket

pytestmark = [pytest.mark.slow, POSTGRES_ONLY]
PROJECTS, APPENDS, EXPORTS = 20, 5, 10
EVENTS = """subscription($p: ID!, $after: String) { renderEvents(projectId: $p, after: $after) {
  render { id status } } }"""
EXPORT = "mutation($p: ID!) { requestExport(projectId: $p) { __typename } }"
UPLOAD_QUERY = (
    "mutation($f: Upload!) { uploadVideo(file: $f) { ... on VideoUploaded { video { id } } } }"
)
TERMINAL = {"DONE", "FAILED", "CANCELLED"}


@pytest.fixture
def cluster(db: Database, tmp_path: Path) -> Iterator[Cluster]:
    """The cluster `editgraph cluster` starts, over this test's PostgreSQL database."""
    settings = {
        "EDITGRAPH_ENV": "test",
        "EDITGRAPH_RECONCILE_EVERY_S": "1",
        "EDITGRAPH_RENDER_LEASE_S": "3",
        "EDITGRAPH_EXPORT_X264_PRESET": "ultrafast",
        "EDITGRAPH_RATE_PROXIES": "100000",
        "EDITGRAPH_RATE_EXPORTS": "100000",
    }
    with Cluster(tmp_path / "cluster", database_url=db.url, extra_env=settings) as started:
        yield started


async def gql(http: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any]) -> Any:
    answer = await http.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = answer.json()
    assert "errors" not in body, body
    return body["data"]


async def upload(http: httpx.AsyncClient, token: str, path: Path) -> str:
    operations = {"query": UPLOAD_QUERY, "variables": {"f": None}}
    answer = await http.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps({"0": ["variables.f"]})},
        files={"0": (path.name, await asyncio.to_thread(path.read_bytes), "video/mp4")},
        headers={"Authorization": f"Bearer {token}"},
    )
    video_id: str = answer.json()["data"]["uploadVideo"]["video"]["id"]
    return video_id


async def listen(ws: ClientConnection, projects: list[str], seen: list[dict[str, Any]]) -> None:
    """Subscribe to every project's events from the start; collect them until cancelled."""
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    for pid in projects:
        request = {"query": EVENTS, "variables": {"p": pid, "after": "0-0"}}
        await ws.send(json.dumps({"id": pid, "type": "subscribe", "payload": request}))
    async for message in ws:
        event = json.loads(message)
        if event["type"] == "next":
            seen.append(event["payload"]["data"]["renderEvents"]["render"])


async def settled(db: Database) -> bool:
    """Every render has ended, and every project's newest proxy is DONE."""
    async with db.read() as session:
        renders = (await session.exec(select(Render))).all()
        projects = (await session.exec(select(Project))).all()
    if any(r.status in (RenderStatus.QUEUED, RenderStatus.RUNNING) for r in renders):
        return False
    done = {(r.project_id, r.version) for r in renders if r.status == RenderStatus.DONE}
    return len(projects) == PROJECTS and all((p.id, p.current_version) in done for p in projects)


async def test_two_servers_and_three_workers_share_nothing_but_the_database_redis_and_bucket(
    cluster: Cluster, db: Database, media: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in LOOPBACK_CREDENTIALS.items():
        monkeypatch.setenv(name, value)  # to look into the bucket from here
    users = [await create_user(db=db, name=name) for name in ("alice", "bob")]
    tokens = [token for _, token in users]
    servers = [httpx.AsyncClient(base_url=url, timeout=60) for url in cluster.urls]
    try:
        videos = [await upload(servers[n], tokens[n], media["clip"]) for n in (0, 1)]
        projects: dict[int, list[str]] = {0: [], 1: []}
        for n in range(PROJECTS):
            owner = n % 2
            created = await gql(
                servers[n % 2 ^ (n // 2) % 2],
                tokens[owner],
                CREATE,
                {"v": videos[owner], "name": f"project {n}"},
            )
            projects[owner].append(created["createProject"]["project"]["id"])
        # Each user listens on both servers, to all of their projects.
        seen: dict[tuple[int, int], list[dict[str, Any]]] = {}
        listeners = []
        sockets = []
        for owner in (0, 1):
            for server in (0, 1):
                socket_cm = raw_socket(
                    cluster.urls[server], {"authorization": f"Bearer {tokens[owner]}"}
                )
                ws = await socket_cm.__aenter__()
                sockets.append(socket_cm)
                seen[owner, server] = []
                listeners.append(
                    asyncio.create_task(listen(ws, projects[owner], seen[owner, server]))
                )

        async def edit(owner: int, index: int, pid: str) -> None:
            for step in range(APPENDS):
                ops = [{"brightness": {"brightness": step + 1}}]
                answer = await gql(
                    servers[(index + step) % 2], tokens[owner], APPEND, {"p": pid, "ops": ops}
                )
                assert answer["appendOps"]["__typename"] == "OpsAppended"

        await asyncio.gather(
            *(edit(o, i, pid) for o in (0, 1) for i, pid in enumerate(projects[o]))
        )
        for n in range(EXPORTS):
            owner, pid = n % 2, projects[n % 2][n // 2]
            answer = await gql(servers[n % 2], tokens[owner], EXPORT, {"p": pid})
            assert answer["requestExport"]["__typename"] == "ExportQueued"
        await until(lambda: settled(db), within=240, what="every render to end")
        await asyncio.sleep(1.0)  # the last events on their way to the subscribers
        for task in listeners:
            task.cancel()
        for socket_cm in sockets:
            await socket_cm.__aexit__(None, None, None)
    finally:
        for client in servers:
            await client.aclose()

    async with db.read() as session:
        renders = (await session.exec(select(Render).order_by(col(Render.id)))).all()
    assert not [r for r in renders if r.status == RenderStatus.FAILED]
    exports = [r for r in renders if r.kind == RenderKind.EXPORT]
    assert len(exports) == EXPORTS and all(r.status == RenderStatus.DONE for r in exports)
    # Each render ran once: no second attempt, no file made twice.
    assert {r.id: r.attempts for r in renders if r.status == RenderStatus.DONE} == {
        r.id: 1 for r in renders if r.status == RenderStatus.DONE
    }
    bucket = s3_store(f"s3://{BUCKET}", endpoint=cluster.s3_endpoint_url, region="us-east-1")
    stored = {m["path"] for batch in obstore.list(bucket) for m in batch}
    for render in renders:
        if render.status == RenderStatus.DONE:
            assert render.output_key in stored, render
    assert not [k for k in stored if k.startswith("temp/")]
    # Every subscriber saw every terminal event of its projects, once.
    for (owner, _server), events in seen.items():
        mine = {ids.decode(p, "Project") for p in projects[owner]}
        ended = Counter(ids.decode(e["id"], "Render") for e in events if e["status"] in TERMINAL)
        expected = {
            r.id: 1
            for r in renders
            if r.project_id in mine and r.status in (RenderStatus.DONE, RenderStatus.CANCELLED)
        }
        assert dict(ended) == expected
    # No process had a media folder: every one of them read and wrote the bucket alone.
    assert not [p for p in cluster.folder.rglob("no-media-folder/**/*") if p.is_file()]


async def export_of(db: Database, project_id: int) -> Render | None:
    async with db.read() as session:
        found: Render | None = (
            await session.exec(
                select(Render).where(
                    Render.project_id == project_id, Render.kind == RenderKind.EXPORT
                )
            )
        ).first()
    return found


@pytest.mark.timeout(300)
async def test_a_killed_worker_and_a_restarted_redis_lose_nothing(
    cluster: Cluster,
    db: Database,
    long_clip: Path,
    media: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for name, value in LOOPBACK_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    _, token = await create_user(db=db, name="alice")
    one, other = (httpx.AsyncClient(base_url=url, timeout=60) for url in cluster.urls)
    try:
        video = await upload(one, token, long_clip)
        created = await gql(one, token, CREATE, {"v": video, "name": "long"})
        pid = created["createProject"]["project"]["id"]
        number = ids.decode(pid, "Project")
        heavy = [{"gaussianBlur": {"radius": 2}}]
        await gql(other, token, APPEND, {"p": pid, "ops": heavy})
        await gql(one, token, EXPORT, {"p": pid})

        async def running() -> bool:
            export = await export_of(db, number)
            return export is not None and export.status == RenderStatus.RUNNING

        await until(running, within=120, what="the export to start")
        # kill -9 every worker mid-render (whichever holds it), then one comes back.
        for n in (1, 2, 3):
            cluster.children[f"worker-{n}"].kill()
        cluster.children["worker-1"].start()

        async def exported() -> Render | None:
            export = await export_of(db, number)
            return export if export and export.status == RenderStatus.DONE else None

        done = await until(exported, within=240, what="the export to finish elsewhere")
        assert done.attempts == 2  # the killed attempt, and the one that finished
        bucket = s3_store(f"s3://{BUCKET}", endpoint=cluster.s3_endpoint_url, region="us-east-1")
        stored = {m["path"] for batch in obstore.list(bucket) for m in batch}
        assert [k for k in stored if k.startswith(f"export/{number}/")] == [done.output_key]
        assert not [k for k in stored if k.startswith("temp/")]
        final = tmp_path / "final.mp4"
        final.write_bytes(bytes(obstore.get(bucket, done.output_key or "").bytes()))
        assert measure.duration(final) == pytest.approx(20.0, abs=0.1)

        # Redis restarts (nothing kept): a subscriber on the other server and the queue
        # carry on; the reconciler hands the database's pending work to the new Redis.
        async with raw_socket(cluster.urls[1], {"authorization": f"Bearer {token}"}) as ws:
            seen: list[dict[str, Any]] = []
            listener = asyncio.create_task(listen(ws, [pid], seen))
            await until(lambda: settled_proxy(db, number), within=120, what="the proxy")
            assert cluster.redis is not None and cluster.redis.process is not None
            restarts = cluster.redis.restarts
            cluster.redis.process.kill()
            await until(lambda: _restarted(cluster, restarts), within=30, what="Redis to restart")
            await gql(one, token, APPEND, {"p": pid, "ops": [{"grayscale": True}]})

            async def newest_seen() -> bool:
                async with db.read() as session:
                    proxy = (
                        await session.exec(
                            select(Render).where(
                                Render.project_id == number,
                                Render.kind == RenderKind.PROXY,
                                Render.version == 2,
                            )
                        )
                    ).first()
                return proxy is not None and any(
                    ids.decode(e["id"], "Render") == proxy.id and e["status"] == "DONE"
                    for e in seen
                )

            await until(newest_seen, within=120, what="the new proxy's event after the restart")
            listener.cancel()
    finally:
        await one.aclose()
        await other.aclose()


async def settled_proxy(db: Database, project_id: int) -> bool:
    async with db.read() as session:
        pending = (
            await session.exec(
                select(Render).where(
                    Render.project_id == project_id,
                    col(Render.status).in_([RenderStatus.QUEUED, RenderStatus.RUNNING]),
                )
            )
        ).first()
    return pending is None


async def _restarted(cluster: Cluster, before: int) -> bool:
    return cluster.redis is not None and cluster.redis.restarts > before

"""Live updates over graphql-transport-ws: real websocket clients, uvicorn, the render worker
(in this process; another server process where events must cross processes)."""

import asyncio
import gc
import json
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import Job, JobStatus
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.common import serve
from editgraph.app import create_app
from editgraph.bus import EventBus, Seats
from editgraph.redis_embed import EmbeddedRedis, free_port
from editgraph.settings import Settings
from jobs import queue as jobs_queue
from models import redis_keys
from models.db import Database
from models.tables import Render
from resolvers import ids
from resolvers.events import decode
from schema.context import Context
from tests.helpers.api import APPEND, CREATE, Api, AppFactory, project, settings_of, upload
from tests.helpers.polling import until
from tests.helpers.processes import ffmpeg_children, server_process
from tests.helpers.renders import without_proxies
from tests.helpers.websocket import raw_socket, ws_url
from tests.helpers.worker import WorkerFactory

pytestmark = pytest.mark.slow
PROXY_READY = "subscription($p: ID!) { proxyReady(projectId: $p) { id version status url } }"
EXPORT_COMPLETE = (
    "subscription($p: ID!) { exportComplete(projectId: $p) { id version status url latest } }"
)
RENDER_EVENTS = """subscription($p: ID!, $after: String) { renderEvents(projectId: $p, after: $after) {
  __typename cursor render { id kind version status progress }
  ... on RenderFailed { error } ... on ExportComplete { export { id version } } } }"""
EXPORT = "mutation($p: ID!) { requestExport(projectId: $p) { __typename } }"


@asynccontextmanager
async def subscription(
    base: str, token: str, document: str, variables: dict[str, Any]
) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """A gql client subscribed over graphql-transport-ws with the token in connection_init."""
    transport = WebsocketsTransport(
        url=ws_url(base),
        init_payload={"authorization": f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    async with Client(transport=transport) as session:
        request = GraphQLRequest(document, variable_values=variables)
        stream = session.subscribe(request)
        try:
            yield stream
        finally:
            await stream.aclose()


async def take(stream: AsyncIterator[dict[str, Any]], within: float = 60) -> dict[str, Any]:
    return await asyncio.wait_for(anext(stream), within)


async def new_project(api: Api, token: str, source: Path) -> str:
    video = (await upload(api, token, source))["video"]["id"]
    created = await api.data(token, CREATE, {"v": video, "name": "live"})
    pid: str = created["createProject"]["project"]["id"]
    return pid


async def proxy_done(api: Api, token: str, pid: str, version: int) -> bool:
    latest = (await project(api, token, pid))["latestProxy"]
    return bool(latest) and latest["version"] == version and latest["status"] == "DONE"


async def test_proxy_ready_and_export_complete_arrive(
    live: tuple[Api, str],
    tokens: dict[str, str],
    media: dict[str, Path],
    run_worker: WorkerFactory,
) -> None:
    api, base = live
    alice = tokens["alice"]
    async with run_worker():
        pid = await new_project(api, alice, media["clip"])
        await until(lambda: proxy_done(api, alice, pid, 0), what="version 0's proxy")
        async with subscription(base, alice, PROXY_READY, {"p": pid}) as proxies:
            # A late subscriber first gets the current version's finished proxy.
            first = await take(proxies)
            assert (first["proxyReady"]["version"], first["proxyReady"]["status"]) == (0, "DONE")
            await api.data(alice, APPEND, {"p": pid, "ops": [{"grayscale": True}]})
            ready = (await take(proxies))["proxyReady"]
            assert (ready["version"], ready["status"]) == (1, "DONE")
            assert (await api.client.get(ready["url"])).status_code == 200
        async with subscription(base, alice, EXPORT_COMPLETE, {"p": pid}) as exports:
            await api.data(alice, EXPORT, {"p": pid})
            done = (await take(exports))["exportComplete"]
            assert (done["version"], done["status"], done["latest"]) == (1, "DONE", True)
            assert (await api.client.get(done["url"])).status_code == 200


async def test_render_events_replay_what_was_missed_once_and_in_order(
    live: tuple[Api, str],
    tokens: dict[str, str],
    media: dict[str, Path],
    env: dict[str, str],
    redis_server: EmbeddedRedis,
    run_worker: WorkerFactory,
) -> None:
    api, base = live
    alice = tokens["alice"]
    async with run_worker():
        pid = await new_project(api, alice, media["clip"])
        await until(lambda: proxy_done(api, alice, pid, 0), what="version 0's proxy")
        async with subscription(
            base, alice, RENDER_EVENTS, {"p": pid, "after": None}
        ) as live_events:
            # gql subscribes on the first read, and graphql-transport-ws does not acknowledge
            # a subscribe: start reading, and edit only once the server has it live.
            first = asyncio.ensure_future(take(live_events))
            bus: EventBus = api.services.bus
            await until(lambda: _count(bus, 1), within=10, what="the subscription to be live")
            await api.data(alice, APPEND, {"p": pid, "ops": [{"mute": True}]})
            seen = [(await first)["renderEvents"]]
            while seen[-1]["__typename"] != "ProxyReady":
                seen.append((await take(live_events))["renderEvents"])
        assert seen[0]["__typename"] == "RenderQueued"
        resume_from = seen[-1]["cursor"]
        # While disconnected: another edit renders, and an export fails.
        await api.data(alice, APPEND, {"p": pid, "ops": [{"grayscale": True}]})
        await until(lambda: proxy_done(api, alice, pid, 2), what="version 2's proxy")
        for original in (Path(env["EDITGRAPH_MEDIA_ROOT"]) / "videos").glob("*[0-9a-f].mp4"):
            original.unlink()
        await api.data(alice, EXPORT, {"p": pid})

        async def export_failed() -> bool:
            exports = (await project(api, alice, pid))["exports"]
            return bool(exports) and exports[0]["status"] == "FAILED"

        await until(export_failed, what="the export to fail")
        async with subscription(
            base, alice, RENDER_EVENTS, {"p": pid, "after": resume_from}
        ) as resumed:
            replayed = [(await take(resumed))["renderEvents"]]
            while replayed[-1]["__typename"] != "RenderFailed":
                replayed.append((await take(resumed))["renderEvents"])
    cursors = [e["cursor"] for e in replayed]
    assert len(set(cursors)) == len(cursors)
    order = [tuple(map(int, c.split("-"))) for c in cursors]
    assert order == sorted(order) and order[0] > tuple(map(int, resume_from.split("-")))
    # Exactly what the project's event stream holds after the cursor, no more, no less.
    redis = Redis.from_url(redis_server.url)
    stored = await redis.xrange(
        redis_keys.events_stream(ids.decode(pid, "Project")), min=f"({resume_from}"
    )
    await redis.aclose()
    assert cursors == [entry_id.decode() for entry_id, _ in stored][: len(cursors)]
    kinds = [e["__typename"] for e in replayed]
    assert kinds[0] == "RenderQueued" and "ProxyReady" in kinds
    assert "file is missing" in replayed[-1]["error"]


async def test_live_events_resume_after_a_redis_restart(
    live: tuple[Api, str],
    tokens: dict[str, str],
    media: dict[str, Path],
    redis_server: EmbeddedRedis,
    run_worker: WorkerFactory,
) -> None:
    api, base = live
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    bus: EventBus = api.services.bus
    async with subscription(base, alice, RENDER_EVENTS, {"p": pid, "after": None}) as events:
        first = asyncio.ensure_future(take(events, 90))
        await until(lambda: _count(bus, 1), within=10, what="the subscription to be live")
        before = bus.connections
        redis_server.stop()
        redis_server.start()

        async def reconnected() -> bool:
            return bus.connections > before

        await until(reconnected, within=20, what="the bus to reconnect")
        async with run_worker():
            # The reconciler re-enqueues version 0's proxy, which Redis forgot.
            received = [(await first)["renderEvents"]]
            while received[-1]["__typename"] != "ProxyReady":
                received.append((await take(events))["renderEvents"])
    assert received[-1]["render"]["version"] == 0


async def test_events_reach_a_client_on_another_server_process(
    live: tuple[Api, str],
    tokens: dict[str, str],
    media: dict[str, Path],
    env: dict[str, str],
    tmp_path: Path,
    run_worker: WorkerFactory,
) -> None:
    api, _ = live
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    # The worker publishes in this process; the subscriber listens on the other server.
    with server_process(env, free_port(), tmp_path / "server-2.log") as other:
        async with run_worker():
            await until(lambda: proxy_done(api, alice, pid, 0), what="version 0's proxy")
            async with subscription(other, alice, PROXY_READY, {"p": pid}) as proxies:
                assert (await take(proxies))["proxyReady"]["version"] == 0
                await api.data(alice, APPEND, {"p": pid, "ops": [{"flip": {"axis": "VERTICAL"}}]})
                assert (await take(proxies))["proxyReady"]["version"] == 1


async def test_a_missing_or_bad_token_closes_the_socket_with_4403(
    live: tuple[Api, str], tokens: dict[str, str]
) -> None:
    _, base = live
    for payload in ({}, {"authorization": "Bearer eg_wrong"}, {"authorization": tokens["alice"]}):
        async with raw_socket(base, payload) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_another_users_project_is_not_found_and_delivers_nothing(
    live: tuple[Api, str], tokens: dict[str, str], media: dict[str, Path]
) -> None:
    api, base = live
    pid = await new_project(api, tokens["bob"], media["clip"])
    with pytest.raises(TransportQueryError) as refused:
        async with subscription(base, tokens["alice"], PROXY_READY, {"p": pid}) as stream:
            await take(stream, 10)
    assert "NOT_FOUND" in str(refused.value.errors)


# Replaying from the first event: the server listens before it replays, so the replayed
# RenderQueued (the project's first proxy) proves that the subscription holds its place.
FROM_START = "0-0"


async def live_subscriptions(ws: ClientConnection, wanted: set[str]) -> list[dict[str, Any]]:
    """Read until each of ``wanted`` has sent an event or an error; the errors, in order."""
    waiting, refused = set(wanted), []
    while waiting:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message.get("id") in waiting:
            waiting.discard(message["id"])
            if message["type"] == "error":
                refused.append(message)
            elif message["payload"].get("errors"):
                refused.append({**message, "payload": message["payload"]["errors"]})
    return refused


async def test_subscriptions_per_connection_are_limited(
    live: tuple[Api, str], settings: Settings, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    api, base = live
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    subscribe = {"query": RENDER_EVENTS, "variables": {"p": pid, "after": FROM_START}}
    limit = settings.subscriptions_per_connection
    async with raw_socket(base, {"authorization": f"Bearer {alice}"}) as ws:
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for n in range(limit + 1):
            await ws.send(json.dumps({"id": str(n), "type": "subscribe", "payload": subscribe}))
        [refused] = await live_subscriptions(ws, {str(n) for n in range(limit + 1)})
    assert refused["type"] == "error" and refused["id"] == str(limit)
    assert "limit" in refused["payload"][0]["message"]


async def test_subscriptions_per_user_are_limited_across_connections(
    make_api: AppFactory, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    async with make_api(live=True, subscriptions_per_user=2) as api:
        pid = await new_project(api, alice, media["clip"])
        subscribe = {"query": RENDER_EVENTS, "variables": {"p": pid, "after": FROM_START}}
        async with (
            raw_socket(api.base, {"authorization": f"Bearer {alice}"}) as first,
            raw_socket(api.base, {"authorization": f"Bearer {alice}"}) as second,
        ):
            for ws in (first, second):
                assert json.loads(await ws.recv())["type"] == "connection_ack"
            for sid in ("a", "b"):
                await first.send(json.dumps({"id": sid, "type": "subscribe", "payload": subscribe}))
            assert await live_subscriptions(first, {"a", "b"}) == []
            # A third, on another connection of the same user, is refused.
            await second.send(json.dumps({"id": "c", "type": "subscribe", "payload": subscribe}))
            [refused] = await live_subscriptions(second, {"c"})
            assert refused["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
            # Ending one gives its place back.
            await first.send(json.dumps({"id": "a", "type": "complete"}))
            await second.send(json.dumps({"id": "d", "type": "subscribe", "payload": subscribe}))
            assert await live_subscriptions(second, {"d"}) == []


async def test_the_per_user_limit_holds_across_servers(
    make_api: AppFactory, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    alice = tokens["alice"]
    async with (
        make_api(live=True, subscriptions_per_user=2) as one,
        make_api(live=True, subscriptions_per_user=2) as other,
    ):
        pid = await new_project(one, alice, media["clip"])
        subscribe = {"query": RENDER_EVENTS, "variables": {"p": pid, "after": FROM_START}}
        async with (
            raw_socket(one.base, {"authorization": f"Bearer {alice}"}) as first,
            raw_socket(other.base, {"authorization": f"Bearer {alice}"}) as second,
        ):
            for ws in (first, second):
                assert json.loads(await ws.recv())["type"] == "connection_ack"
            await first.send(json.dumps({"id": "a", "type": "subscribe", "payload": subscribe}))
            await second.send(json.dumps({"id": "b", "type": "subscribe", "payload": subscribe}))
            assert await live_subscriptions(first, {"a"}) == []
            assert await live_subscriptions(second, {"b"}) == []
            # A third on either server is refused: the two servers count together.
            await first.send(json.dumps({"id": "c", "type": "subscribe", "payload": subscribe}))
            [refused] = await live_subscriptions(first, {"c"})
            assert refused["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
            # Ending one on the other server gives its place back here.
            await second.send(json.dumps({"id": "b", "type": "complete"}))
            await first.send(json.dumps({"id": "d", "type": "subscribe", "payload": subscribe}))
            assert await live_subscriptions(first, {"d"}) == []


async def test_a_dead_servers_subscriptions_stop_counting(redis_server: EmbeddedRedis) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        dead, alive = Seats(redis, 1, seat_s=0.6), Seats(redis, 1, seat_s=0.6)
        assert await dead.take(7, 0) is not None
        await dead.stop()  # killed: it never gives its seat back nor renews it
        assert await alive.take(7, 0) is None
        await asyncio.sleep(0.7)
        kept = await alive.take(7, 0)
        assert kept is not None
        # A live server renews its seats: they outlast their first term, and the key that
        # holds them outlives its first expiry (2 s here).
        await asyncio.sleep(2.5)
        assert await Seats(redis, 1, seat_s=0.6).take(7, 0) is None
        await alive.give_back(kept)
        await alive.stop()
    finally:
        await redis.aclose()


async def _count(bus: EventBus, expected: int) -> bool:
    return bus.subscribers == expected


async def test_a_thousand_connect_disconnect_cycles_leave_nothing_behind(
    live: tuple[Api, str],
    tokens: dict[str, str],
    media: dict[str, Path],
    redis_server: EmbeddedRedis,
) -> None:
    api, base = live
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    bus: EventBus = api.services.bus
    subscribe = {"query": RENDER_EVENTS, "variables": {"p": pid}}
    tasks_before = len(asyncio.all_tasks())
    for cycle in range(1000):
        async with raw_socket(base, {"authorization": f"Bearer {alice}"}) as ws:
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": str(cycle), "type": "subscribe", "payload": subscribe}))
            if cycle % 100 == 0:
                await until(lambda: _count(bus, 1), within=10, what="the subscription")
    await until(lambda: _count(bus, 0), within=10, what="every subscription to be released")
    assert dict(bus.per_user_count) == {}
    await until(lambda: _settled(tasks_before), within=10, what="the server's tasks to finish")
    redis = Redis.from_url(redis_server.url)
    assert await redis.execute_command("PUBSUB", "NUMPAT") == 1  # one per server process
    await redis.aclose()


async def _settled(baseline: int) -> bool:
    return len(asyncio.all_tasks()) <= baseline + 1


async def test_subscribers_leaving_in_a_burst_free_what_their_connections_held(
    live: tuple[Api, str], tokens: dict[str, str], media: dict[str, Path]
) -> None:
    # A closed connection's objects sit in reference cycles (graphql-core's execution
    # context, asyncio's transport) that only a full collection frees, and an idle server
    # may not run one for hours: the server must not wait for the interpreter to.
    api, base = live
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    bus: EventBus = api.services.bus
    subscribe = {"query": RENDER_EVENTS, "variables": {"p": pid}}
    gc.collect()
    gc.disable()
    try:
        async with AsyncExitStack() as sockets:
            for n in range(60):
                ws = await sockets.enter_async_context(
                    raw_socket(base, {"authorization": f"Bearer {alice}"})
                )
                assert json.loads(await ws.recv())["type"] == "connection_ack"
                await ws.send(json.dumps({"id": str(n), "type": "subscribe", "payload": subscribe}))
            await until(lambda: _count(bus, 60), within=20, what="60 live subscriptions")
            assert _websocket_contexts() == 60
        await until(lambda: _count(bus, 0), within=10, what="every subscription to be released")
        await until(_all_freed, within=10, what="the closed connections' contexts to be freed")
    finally:
        gc.enable()


def _websocket_contexts() -> int:
    # type(), not isinstance(): a dead weak proxy among the objects raises on isinstance.
    return sum(1 for o in gc.get_objects() if type(o) is Context and o.long_lived)


async def _all_freed() -> bool:
    return _websocket_contexts() == 0


async def test_a_foreign_origin_is_refused_when_origins_are_configured(
    env: dict[str, str], db: Database, tokens: dict[str, str]
) -> None:
    settings = settings_of(env).model_copy(update={"allowed_origins": ["https://app.test"]})
    async with serve(create_app(settings, db=db)) as base:
        with pytest.raises(InvalidStatus) as refused:
            async with raw_socket(base, {}, origin="https://evil.test"):
                pass
        assert refused.value.response.status_code == 403
        payload = {"authorization": f"Bearer {tokens['alice']}"}
        async with raw_socket(base, payload, origin="https://app.test") as ws:
            assert json.loads(await ws.recv())["type"] == "connection_ack"


# Every ending of a render, with the render as it was stored when the event was published.
RENDER_CHANGES = """subscription($p: ID!, $after: String) { renderEvents(projectId: $p, after: $after) {
  __typename cursor render { id kind version status progress error attempts }
  ... on RenderFailed { error } ... on RenderCancelled { reason } } }"""
CANCEL = """mutation($id: ID!) { cancelRender(id: $id) { __typename
  ... on CancelRequested { render { id status } } } }"""
# Replaying from the very first event proves the subscription live before anything happens:
# the server listens first and then replays, so nothing falls between the two.
FROM_THE_START = "0-0"


async def test_cancelling_a_queued_render_is_announced(
    live: tuple[Api, str], tokens: dict[str, str], media: dict[str, Path]
) -> None:
    api, base = live
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])  # no worker runs: its proxy stays queued
    variables = {"p": pid, "after": FROM_THE_START}
    async with subscription(base, alice, RENDER_CHANGES, variables) as events:
        queued = (await take(events, 20))["renderEvents"]
        assert (queued["__typename"], queued["render"]["status"]) == ("RenderQueued", "QUEUED")
        answer = (await api.data(alice, CANCEL, {"id": queued["render"]["id"]}))["cancelRender"]
        assert answer["render"]["status"] == "CANCELLED"
        cancelled = (await take(events, 20))["renderEvents"]
    assert cancelled["__typename"] == "RenderCancelled"
    assert cancelled["render"]["id"] == queued["render"]["id"]
    assert (cancelled["render"]["status"], cancelled["reason"]) == ("CANCELLED", "cancelled")


async def test_a_render_the_reconciler_gives_up_on_is_announced(
    live: tuple[Api, str],
    tokens: dict[str, str],
    media: dict[str, Path],
    env: dict[str, str],
    db: Database,
    redis_server: EmbeddedRedis,
    run_worker: WorkerFactory,
) -> None:
    api, base = live
    alice = tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    attempts = settings_of(env).render_max_attempts
    variables = {"p": pid, "after": FROM_THE_START}
    async with subscription(base, alice, RENDER_CHANGES, variables) as events:
        queued = (await take(events, 20))["renderEvents"]
        render_id = ids.decode(queued["render"]["id"], "Render")
        # Workers that died used every attempt, and Redis lost the job (a restart without
        # persistence): only the reconciler, reading the database, still knows the render.
        async with db.write() as session:
            row = await session.get(Render, render_id)
            assert row is not None
            row.attempts = attempts
            session.add(row)
        redis = Redis.from_url(redis_server.url)
        await redis.zrem(default_queue_name, row.job_id)
        await redis.delete(job_key_prefix + row.job_id)
        await redis.aclose()
        async with run_worker():
            failed = (await take(events, 30))["renderEvents"]
    assert failed["__typename"] == "RenderFailed"
    assert failed["render"]["id"] == queued["render"]["id"]
    assert failed["render"]["status"] == "FAILED"
    assert failed["error"] == f"gave up after {attempts} attempts"
    latest = await api.data(
        alice,
        "query($id: ID!) { node(id: $id) { ... on Render { status } } }",
        {"id": queued["render"]["id"]},
    )
    assert latest["node"]["status"] == "FAILED"


async def next_change(
    events: AsyncIterator[dict[str, Any]], kind: str, *, progress: bool = False
) -> dict[str, Any]:
    """The next event of the project's render of ``kind``; a progress event only if asked."""
    while True:
        event: dict[str, Any] = (await take(events))["renderEvents"]
        wanted = progress or event["__typename"] != "RenderProgress"
        if event["render"]["kind"] == kind and wanted:
            return event


async def rendering(events: AsyncIterator[dict[str, Any]], kind: str, attempt: int) -> None:
    """Until ffmpeg reports progress for ``attempt`` at the project's render of ``kind``."""
    while True:
        event = await next_change(events, kind, progress=True)
        render = event["render"]
        progressing = event["__typename"] == "RenderProgress" and render["progress"] > 0
        if progressing and render["attempts"] == attempt:
            return


async def test_a_retried_then_cancelled_export_announces_each_change(
    live: tuple[Api, str],
    tokens: dict[str, str],
    long_clip: Path,
    redis_server: EmbeddedRedis,
    run_worker: WorkerFactory,
) -> None:
    api, base = live
    alice = tokens["alice"]
    pid = await new_project(api, alice, long_clip)
    await api.data(alice, APPEND, {"p": pid, "ops": [{"gaussianBlur": {"radius": 30}}]})
    await without_proxies(api, alice, pid)
    variables = {"p": pid, "after": FROM_THE_START}
    async with run_worker():
        async with subscription(base, alice, RENDER_CHANGES, variables) as events:
            await api.data(alice, EXPORT, {"p": pid})
            queued = await next_change(events, "EXPORT")
            assert (queued["__typename"], queued["render"]["status"]) == ("RenderQueued", "QUEUED")
            own = f"render-{ids.decode(queued['render']['id'], 'Render')}-"
            await rendering(events, "EXPORT", attempt=1)
            killed = ffmpeg_children(rendering=own)
            assert killed
            for child in killed:
                child.send_signal(signal.SIGKILL)
            retry = await next_change(events, "EXPORT")
            await rendering(events, "EXPORT", attempt=2)
            await api.data(alice, CANCEL, {"id": queued["render"]["id"]})
            cancelled = await next_change(events, "EXPORT")

        async def stopped() -> bool:
            return not ffmpeg_children(rendering=own)

        await until(stopped, within=10, what="the export's ffmpeg to be killed")
        pool = jobs_queue.connect(redis_server.url)
        number = ids.decode(pid, "Project")
        job = Job(
            redis_keys.render_job("export", number, 1), pool, _deserializer=jobs_queue.deserialize
        )

        async def finished() -> bool:
            return await job.status() == JobStatus.complete

        await until(finished, within=20, what="the worker to end the cancelled job")
        stored = await pool.xrange(redis_keys.events_stream(number))
        await pool.aclose(close_connection_pool=True)
    # The attempt ffmpeg's death cost is given back to the queue, and subscribers see it.
    assert (retry["__typename"], retry["render"]["status"]) == ("RenderQueued", "QUEUED")
    assert retry["render"]["error"] == "retrying: ffmpeg was stopped by signal 9"
    assert cancelled["__typename"] == "RenderCancelled"
    assert (cancelled["render"]["status"], cancelled["reason"]) == ("CANCELLED", "cancelled")
    # Announced once, by the cancel itself: the worker that stopped ffmpeg adds no second one.
    endings = [decode(i.decode(), f[b"e"]) for i, f in stored]
    assert [e.kind for e in endings if e.render.kind == "export" and e.terminal] == ["cancelled"]

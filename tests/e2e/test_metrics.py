"""Prometheus metrics as an operator scrapes them: after a render and a GC cycle the
figures say what happened; /metrics wants an admin; the listener serves them without auth."""

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from editgraph.redis_embed import free_port
from jobs.queue import ArqQueue
from models.db import Database
from resolvers import ids
from tests.helpers.api import Api, AppFactory, new_project, project
from tests.helpers.domain import actor_named
from tests.helpers.gc import exports_on_disk
from tests.helpers.polling import until
from tests.helpers.worker import WorkerFactory

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a series not there yet (a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(api: Api, token: str) -> Samples:
    response = await api.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def test_a_render_and_a_gc_cycle_show_in_the_scraped_figures(
    make_api: AppFactory,
    run_worker: WorkerFactory,
    tokens: dict[str, str],
    db: Database,
    queue: ArqQueue,
    media: dict[str, Path],
) -> None:
    root, alice = tokens["root"], tokens["alice"]
    async with make_api(metrics_storage_every_s=0) as api:
        anonymous = await api.client.get("/metrics")
        assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
        mine = await api.client.get("/metrics", headers={"Authorization": f"Bearer {alice}"})
        assert mine.status_code == 403
        before = await scrape(api, root)

        pid = await new_project(api, alice, media["clip"])
        queued = await scrape(api, root)
        assert value(queued, "editgraph_render_queue_depth", kind="proxy") == 1
        assert value(queued, "editgraph_renders_in_progress", kind="proxy") == 0
        uploaded = value(queued, "editgraph_upload_bytes_total") - value(
            before, "editgraph_upload_bytes_total"
        )
        assert uploaded >= media["clip"].stat().st_size
        created = ("editgraph_graphql_operation_duration_seconds_count", "anonymous", "mutation")
        labels = {"operation": created[1], "type": created[2], "outcome": "ok"}
        assert value(queued, created[0], **labels) - value(before, created[0], **labels) >= 1

        async with run_worker():

            async def proxy_done() -> bool:
                proxy = (await project(api, alice, pid))["latestProxy"]
                return bool(proxy and proxy["status"] == "DONE")

            await until(proxy_done, what="the proxy")
        rendered = await scrape(api, root)

        def delta(name: str, **labels: str) -> float:
            return value(rendered, name, **labels) - value(before, name, **labels)

        assert delta("editgraph_render_attempts_total", kind="proxy") == 1
        assert delta("editgraph_render_duration_seconds_count", kind="proxy", outcome="done") == 1
        assert delta("editgraph_render_duration_seconds_sum", kind="proxy", outcome="done") > 0
        assert delta("editgraph_render_realtime_factor_count", kind="proxy") == 1
        assert value(rendered, "editgraph_render_queue_depth", kind="proxy") == 0
        assert value(rendered, "editgraph_storage_bytes", area="videos") >= uploaded / 2
        assert value(rendered, "editgraph_storage_objects", area="videos") >= 1

        # A GC cycle over three exports, the first pinned.
        store = api.services.store
        setup = await exports_on_disk(
            db, queue, store, await actor_named(db, "alice"), media["clip"], count=3
        )
        pin = """mutation($p: ID!) { setExportPinned(projectId: $p, version: 1, pinned: true) {
                   __typename } }"""
        await api.data(alice, pin, {"p": ids.encode("Project", setup.project_id)})
        started = time.time()
        cycle = await api.data(
            root, "mutation { gcFullCycle(confirm: true, daysInArchive: 0) { id } }"
        )
        query = "query($id: ID!) { gcRun(id: $id) { status marked archived deleted bytesFreed } }"

        async def run_over() -> dict[str, object] | None:
            run = (await api.data(root, query, {"id": cycle["gcFullCycle"]["id"]}))["gcRun"]
            return run if run["status"] != "RUNNING" else None

        run = await until(run_over, within=30, what="the GC cycle")
        assert (run["status"], run["marked"], run["deleted"]) == ("DONE", 1, 1)
        collected = await scrape(api, root)
        for action in ("marked", "archived", "deleted"):
            assert value(collected, "editgraph_gc_exports_total", action=action) == run[action]
        assert value(collected, "editgraph_gc_bytes_total", action="freed") == run["bytesFreed"]
        assert value(collected, "editgraph_gc_bytes_total", action="freed") == 800
        last = value(collected, "editgraph_gc_last_run_timestamp_seconds")
        assert started - 1 <= last <= time.time() + 1
        # No series is labelled by user or project.
        assert not {k for _, labels in collected for k, _ in labels} & {
            "user",
            "user_id",
            "project",
            "project_id",
        }


async def test_the_listener_serves_the_same_figures_without_auth(
    make_api: AppFactory, tokens: dict[str, str], media: dict[str, Path]
) -> None:
    port = free_port()
    async with make_api(metrics_addr=f"127.0.0.1:{port}", metrics_refresh_s=0.1) as api:
        await new_project(api, tokens["alice"], media["clip"])

        async def scraped() -> Samples | None:
            response = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics")
            samples = parse(response.text)
            queued = value(samples, "editgraph_render_queue_depth", kind="proxy")
            return samples if response.status_code == 200 and queued == 1 else None

        samples = await until(scraped, within=10, what="the listener's figures")
        assert value(samples, "editgraph_upload_bytes_total") >= media["clip"].stat().st_size
        assert value(samples, "editgraph_websocket_connections") == 0
    # Stopped with the server.
    with pytest.raises(httpx.ConnectError):
        await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics", timeout=2)

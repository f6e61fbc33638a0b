"""The GC over GraphQL: admins only, confirmation enforced, pins by their owner only."""

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from tests.helpers.api import Api
from tests.helpers.domain import actor_named
from tests.helpers.gc import exports_on_disk


async def finished(api: Api, token: str, run_id: str) -> dict[str, Any]:
    """Follow a background GC run with gcRun(id) until it stops running."""
    for _ in range(600):
        run = (
            await api.data(
                token,
                "query($id: ID!) { gcRun(id: $id) { status done total marked archived deleted bytesFreed error exports { version } } }",
                {"id": run_id},
            )
        )["gcRun"]
        if run["status"] != "RUNNING":
            return dict(run)
        await asyncio.sleep(0.05)
    raise AssertionError(f"GC run {run_id} still running after 30 s")


ADMIN_FIELDS = [
    "{ gcCandidates { count bytes } }",
    "{ unusedVideos { id } }",
    "{ storageUsage { videos { bytes files } } }",
    "mutation { gcMark { id marked } }",
    "mutation { gcArchive { id archived } }",
    "mutation { gcDelete(confirm: true) { id deleted } }",
    'mutation { gcRestore(exportId: "RXhwb3J0OjE") { __typename } }',
    "mutation { gcFullCycle(confirm: true) { id marked } }",
    "{ gcRuns { id status } }",
]


async def test_only_admins_run_the_gc(api: Api, tokens: dict[str, str]) -> None:
    for query in ADMIN_FIELDS:
        body = await api.query(tokens["alice"], query)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", query
        answer = await api.query(tokens["root"], query)
        assert "errors" not in answer, query
        for run in answer["data"].values():
            if isinstance(run, dict) and "id" in run:
                assert (await finished(api, tokens["root"], run["id"]))["status"] == "DONE"


async def test_negative_rules_are_refused_before_anything_runs(
    api: Api, tokens: dict[str, str]
) -> None:
    for query in (
        "{ gcCandidates(keepLatest: -1) { count } }",
        "{ gcCandidates(daysOld: -3) { count } }",
        "mutation { gcMark(keepLatest: -1) { id } }",
        "mutation { gcMark(daysOld: -1) { id } }",
    ):
        body = await api.query(tokens["root"], query)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", query
        assert "must be 0 or more" in body["errors"][0]["message"]
    # No run was started (nor holds the lock).
    assert (await api.query(tokens["root"], "{ gcRuns { id } }"))["data"]["gcRuns"] == []


async def test_permanent_deletion_needs_confirmation(api: Api, tokens: dict[str, str]) -> None:
    for query in (
        "mutation { gcDelete(confirm: false) { deleted } }",
        "mutation { gcFullCycle(confirm: false) { deleted } }",
    ):
        body = await api.query(tokens["root"], query)
        assert body["errors"][0]["extensions"]["code"] == "CONFIRMATION_REQUIRED"


@pytest.mark.both_storages
async def test_a_full_cycle_through_the_api_keeps_latest_and_pinned(
    api: Api,
    tokens: dict[str, str],
    db: Database,
    queue: ArqQueue,
    media: dict[str, Path],
    storage: str,
) -> None:
    from resolvers import ids

    alice = await actor_named(db, "alice")
    store = api.services.store
    assert isinstance(store, MediaStore)
    setup = await exports_on_disk(db, queue, store, alice, media["clip"], count=3)
    pid = ids.encode("Project", setup.project_id)
    pin = """mutation($p: ID!) { setExportPinned(projectId: $p, version: 1, pinned: true) {
               __typename ... on ExportPinned { export { version pinned } } } }"""
    refused = await api.data(tokens["bob"], pin, {"p": pid})
    assert refused["setExportPinned"]["__typename"] == "NotFound"
    pinned = await api.data(tokens["alice"], pin, {"p": pid})
    assert pinned["setExportPinned"]["export"] == {"version": 1, "pinned": True}
    started = await api.data(
        tokens["root"],
        "mutation { gcFullCycle(confirm: true, daysInArchive: 0) { id action status holder } }",
    )
    assert started["gcFullCycle"]["action"] == "full-cycle"
    assert started["gcFullCycle"]["holder"] == "api (root)"
    run = await finished(api, tokens["root"], started["gcFullCycle"]["id"])
    assert (run["status"], run["marked"], run["archived"], run["deleted"]) == ("DONE", 1, 1, 1)
    assert run["done"] == run["total"] == 2  # one export archived, then deleted
    assert run["bytesFreed"] == 800
    assert [e["version"] for e in run["exports"]] == [2]
    listing = await api.data(
        tokens["alice"],
        "query($p: ID!) { project(id: $p) { exports { version gcState pinned latest url } } }",
        {"p": pid},
    )
    by_version = {e["version"]: e for e in listing["project"]["exports"]}
    assert by_version[3]["latest"] and by_version[3]["gcState"] == "NONE" and by_version[3]["url"]
    assert by_version[1]["pinned"] and by_version[1]["gcState"] == "NONE"
    assert by_version[2]["gcState"] == "DELETED" and by_version[2]["url"] is None
    # The kept files are there for whoever follows their links, and nothing else is.
    for version in (1, 3):
        url = by_version[version]["url"]
        if storage == "s3":  # presigned by the bucket, fetched from it
            assert "X-Amz-Signature=" in url
            async with httpx.AsyncClient() as outside:
                kept = await outside.get(url)
        else:
            kept = await api.client.get(url)
        assert kept.status_code == 200 and kept.content == b"export-%d" % version * 100
    assert {e.key for a in ("export", "archive", "temp") for e in store.listing(a)} == {
        f"export/{setup.project_id}/v{n}_final.mp4" for n in (1, 3)
    }

    # Asking again for an export the GC deleted renders it again.
    if by_version[2]["gcState"] == "DELETED":
        again = await api.data(
            tokens["alice"],
            "mutation($p: ID!) { requestExport(projectId: $p, version: 2) { ... on ExportQueued { export { status gcState } } } }",
            {"p": pid},
        )
        assert again["requestExport"]["export"] == {"status": "QUEUED", "gcState": "NONE"}


async def test_a_second_gc_run_is_refused_with_who_holds_the_lock(
    api: Api, tokens: dict[str, str], db: Database
) -> None:
    from resolvers import gc_runs

    run = await gc_runs.acquire(
        db=db, action="archive", actor=None, holder="cli on host-a", params={}
    )
    for query in (
        "mutation { gcMark { id } }",
        "mutation { gcArchive { id } }",
        "mutation { gcFullCycle(confirm: true) { id } }",
    ):
        body = await api.query(tokens["root"], query)
        error = body["errors"][0]
        assert error["extensions"]["code"] == "GC_BUSY", body
        assert error["extensions"]["runId"] == run.id
        assert error["extensions"]["holder"] == "cli on host-a"
        assert "has been running since" in error["message"]
    listed = await api.data(tokens["root"], "{ gcRuns { id action status holder } }")
    assert listed["gcRuns"] == [
        {"id": str(run.id), "action": "archive", "status": "RUNNING", "holder": "cli on host-a"}
    ]

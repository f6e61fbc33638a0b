"""What the admin console reads, as an admin reads it: the render queue with its failures,
the GC audit page by page, and what a delete stage would take from the archive."""

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import col

from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from models.tables import Export, Render, utcnow
from resolvers import ids
from tests.helpers.api import Api, code_of, new_project
from tests.helpers.domain import actor_named
from tests.helpers.gc import exports_on_disk

QUEUE = """{ renderQueue { kinds { kind queued running doneLastDay failedLastDay averageSeconds }
  recentFailures { id projectId kind version error } } }"""
AUDIT = """query($after: String) { gcAudit(first: 2, after: $after) {
  edges { cursor node { action actor exportId } } pageInfo { hasNextPage endCursor } } }"""
PIN = """mutation($p: ID!, $v: Int!, $on: Boolean!) {
  setExportPinned(projectId: $p, version: $v, pinned: $on) { __typename } }"""


async def test_the_render_queue_counts_and_names_failures(
    api: Api, tokens: dict[str, str], db: Database, media: dict[str, Path]
) -> None:
    assert code_of(await api.query(tokens["alice"], QUEUE)) == "FORBIDDEN"
    pid = await new_project(api, tokens["alice"], media["clip"])  # no worker: it stays queued
    kinds = {k["kind"]: k for k in (await api.data(tokens["root"], QUEUE))["renderQueue"]["kinds"]}
    assert kinds["PROXY"]["queued"] == 1 and kinds["PROXY"]["running"] == 0
    assert kinds["EXPORT"]["queued"] == 0 and kinds["PROXY"]["averageSeconds"] is None
    # The proxy ran for 4 s and failed; the console shows why, and where.
    now = utcnow()
    async with db.write() as session:
        await session.exec(
            update(Render)
            .where(col(Render.project_id) == ids.decode(pid, "Project"))
            .values(
                status="failed",
                error="ffmpeg ran out of memory",
                started_at=now - timedelta(seconds=4),
                finished_at=now,
            )
        )
    figures = (await api.data(tokens["root"], QUEUE))["renderQueue"]
    kinds = {k["kind"]: k for k in figures["kinds"]}
    assert (kinds["PROXY"]["queued"], kinds["PROXY"]["failedLastDay"]) == (0, 1)
    [failure] = figures["recentFailures"]
    assert (failure["projectId"], failure["kind"], failure["version"]) == (pid, "PROXY", 0)
    assert failure["error"] == "ffmpeg ran out of memory"


async def test_the_gc_audit_pages_newest_first_and_the_archive_due_is_counted(
    api: Api, tokens: dict[str, str], db: Database, queue: ArqQueue, media: dict[str, Path]
) -> None:
    alice = await actor_named(db, "alice")
    store = api.services.store
    assert isinstance(store, MediaStore)
    setup = await exports_on_disk(db, queue, store, alice, media["clip"], count=3)
    pid = ids.encode("Project", setup.project_id)
    # An admin reads alice's history as she does: v3 is her latest.
    listing = "{ users { name projects { nodes { exports { version latest } } } } }"
    mine = next(
        u for u in (await api.data(tokens["root"], listing))["users"] if u["name"] == "alice"
    )
    latest = [e["version"] for e in mine["projects"]["nodes"][0]["exports"] if e["latest"]]
    assert latest == [3]
    for version, on in ((1, True), (2, True), (1, False)):
        await api.data(tokens["alice"], PIN, {"p": pid, "v": version, "on": on})
    first = (await api.data(tokens["root"], AUDIT, {"after": None}))["gcAudit"]
    assert [e["node"]["action"] for e in first["edges"]] == ["unpin", "pin"]
    assert first["edges"][0]["node"]["exportId"] == ids.encode("Export", setup.exports[1].id or 0)
    assert {e["node"]["actor"] for e in first["edges"]} == {"alice"}
    assert first["pageInfo"]["hasNextPage"]
    rest = await api.data(tokens["root"], AUDIT, {"after": first["pageInfo"]["endCursor"]})
    assert [e["node"]["action"] for e in rest["gcAudit"]["edges"]] == ["pin"]
    assert not rest["gcAudit"]["pageInfo"]["hasNextPage"]
    # Two exports archived 40 days ago, one yesterday: a 30-day delete takes the two.
    async with db.write() as session:
        for version, days in ((1, 40), (2, 40), (3, 1)):
            await session.exec(
                update(Export)
                .where(col(Export.id) == setup.exports[version].id)
                .values(gc_state="archived", archived_at=utcnow() - timedelta(days=days))
            )
    due = "{ gcArchiveDue(daysInArchive: 30) { count bytes } }"
    assert (await api.data(tokens["root"], due))["gcArchiveDue"] == {"count": 2, "bytes": 1600.0}
    assert code_of(await api.query(tokens["alice"], due)) == "FORBIDDEN"
    # A day count past any date a database holds is refused, not a crash.
    for huge in (
        "{ gcArchiveDue(daysInArchive: 1000000) { count } }",
        "{ gcCandidates(daysOld: 1000000) { count } }",
        "mutation { gcDelete(confirm: true, daysInArchive: 2147483647) { id } }",
    ):
        assert code_of(await api.query(tokens["root"], huge)) == "BAD_USER_INPUT", huge

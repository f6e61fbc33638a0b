"""Faults around Redis: a hung Redis never stalls a save."""

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from arq.jobs import Job, JobStatus

from editgraph.redis_embed import EmbeddedRedis
from jobs.events import EventLog
from jobs.queue import connect, deserialize
from jobs.reconcile import reconcile
from jobs.runtime import Runtime
from models.db import Database
from models.store import MediaStore
from resolvers import ids
from tests.conftest import Api
from tests.e2e.conftest import settings_of
from tests.schema.test_api import APPEND, new_project

pytestmark = pytest.mark.slow
# Not a speed check: a save that waited on the hung Redis took 20 s (two 10 s socket
# timeouts, under the write lock); one that does not takes milliseconds.
HANG_GUARD_S = 5.0
EXPORT = """mutation($p: ID!) { requestExport(projectId: $p) {
  __typename ... on ExportQueued { export { version status } } } }"""
HISTORY = """query($id: ID!) { project(id: $id) { currentVersion
  versions(first: 20) { nodes { number proxy { status } export { status } } } } }"""


async def saved(api: Api, token: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The answer to a request that must not wait on Redis."""
    async with asyncio.timeout(HANG_GUARD_S):
        return await api.data(token, query, variables)


async def test_edits_save_while_redis_hangs_and_the_reconciler_queues_their_renders(
    app_api: Api,
    tokens: dict[str, str],
    media: dict[str, Path],
    env: dict[str, str],
    db: Database,
    redis_server: EmbeddedRedis,
) -> None:
    api, alice = app_api, tokens["alice"]
    pid = await new_project(api, alice, media["clip"])
    number = ids.decode(pid, "Project")
    assert redis_server.process is not None
    redis_pid = redis_server.process.pid
    # Paused, not stopped: connections are accepted and never answered.
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        for level in range(3):
            ops = [{"brightness": {"brightness": level}}]
            appended = (await saved(api, alice, APPEND, {"p": pid, "ops": ops}))["appendOps"]
            assert appended["__typename"] == "OpsAppended"
        # Writers at once: on SQLite each used to hold the write lock while Redis hung.
        together = await asyncio.gather(
            *(
                saved(api, alice, APPEND, {"p": pid, "ops": [{"contrast": {"contrast": level}}]})
                for level in range(3)
            )
        )
        assert [a["appendOps"]["__typename"] for a in together] == ["OpsAppended"] * 3
        exported = (await saved(api, alice, EXPORT, {"p": pid}))["requestExport"]
        assert exported == {
            "__typename": "ExportQueued",
            "export": {"version": 6, "status": "QUEUED"},
        }
        history = (await saved(api, alice, HISTORY, {"id": pid}))["project"]
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    assert history["currentVersion"] == 6
    nodes = history["versions"]["nodes"]
    assert [v["number"] for v in nodes] == [6, 5, 4, 3, 2, 1, 0]
    assert all(v["proxy"]["status"] == "QUEUED" for v in nodes[:-1])

    # Redis never received those jobs; the reconciler queues them from the database.
    pool = connect(redis_server.url)
    try:
        wanted = [f"proxy:{number}:{v}" for v in range(1, 7)] + [f"export:{number}:6"]

        async def statuses() -> list[JobStatus]:
            return [await Job(j, pool, _deserializer=deserialize).status() for j in wanted]

        assert await statuses() == [JobStatus.not_found] * len(wanted)
        runtime = Runtime(
            config=settings_of(env).worker_config(),
            db=db,
            store=MediaStore(Path(env["EDITGRAPH_MEDIA_ROOT"])),
            redis=pool,
            events=EventLog(pool),
        )
        assert await reconcile({"runtime": runtime}) == len(wanted)
        assert await statuses() == [JobStatus.queued] * len(wanted)
    finally:
        await pool.aclose(close_connection_pool=True)

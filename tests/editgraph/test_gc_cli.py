"""`editgraph gc` obeys the API's rules: a readable table, --dry-run, --yes for deletion."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Protocol

import pytest

from editgraph.cli import main
from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from resolvers import admin, gc_runs, ids
from resolvers.users import Actor
from tests.helpers.gc import exports_on_disk, states


def cli_environment(db: Database, store: MediaStore) -> dict[str, str]:
    """The machine's environment without its ``EDITGRAPH_*`` settings, plus the test's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDITGRAPH_")}
    env.update(EDITGRAPH_DATABASE_URL=db.url, EDITGRAPH_MEDIA_ROOT=str(store.root))
    return env


def gc_process(db: Database, store: MediaStore, *args: str) -> subprocess.CompletedProcess[str]:
    """`editgraph gc ...` as the separate command an operator runs."""
    return subprocess.run(
        [sys.executable, "-m", "editgraph.cli", "gc", *args],
        env=cli_environment(db, store),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class GcCli(Protocol):
    """The ``gc_cli`` fixture: ``await gc_cli("mark", "--dry-run")``."""

    async def __call__(self, *args: str) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def gc_cli(
    db: Database,
    store: MediaStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> GcCli:
    """`editgraph gc ...` through the command's own entry point in this process: the same
    parser, settings from the environment, output and exit code, without an interpreter
    to start for each call (one test runs the real command)."""
    for name in os.environ:
        if name.startswith("EDITGRAPH_"):
            monkeypatch.delenv(name)
    for name, value in cli_environment(db, store).items():
        monkeypatch.setenv(name, value)

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        # Its own thread: the command runs its own event loop, as it does from a shell.
        code = await asyncio.to_thread(main, ["gc", *args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["editgraph", "gc", *args], code, out, err)

    return run


def test_negative_counts_are_refused_with_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for args in (("candidates", "--keep-latest", "-1"), ("mark", "--days-old", "-2")):
        with pytest.raises(SystemExit) as exited:
            main(["gc", *args])
        assert exited.value.code == 2
        assert "is negative; give 0 or more" in capsys.readouterr().err


async def test_the_cli_runs_the_same_gc(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    media: dict[str, Path],
    gc_cli: GcCli,
) -> None:
    await exports_on_disk(db, queue, store, alice, media["clip"], count=3)
    listed = gc_process(db, store, "candidates")  # the command an operator types
    assert listed.returncode == 0, listed.stderr
    header = listed.stdout.splitlines()[0].split()
    assert header[:4] == ["export", "project", "version", "state"]
    # Ids as the API shows them, so an operator can look them up there.
    assert ids.encode("Export", 1) in listed.stdout
    assert ids.encode("Project", 1) in listed.stdout
    assert "would mark 2 export(s), 1.6 KiB" in listed.stdout
    dry = await gc_cli("mark", "--dry-run")
    assert "would mark 2" in dry.stdout
    assert await states(db) == {1: "none", 2: "none", 3: "none"}
    assert "marked 2 export(s)" in (await gc_cli("mark")).stdout
    assert "would archive these" in (await gc_cli("archive", "--dry-run")).stdout
    assert "archived 2 export(s)" in (await gc_cli("archive")).stdout
    refused = await gc_cli("delete", "--days-in-archive", "0")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert await states(db) == {1: "archived", 2: "archived", 3: "none"}
    restored = await gc_cli("restore", ids.encode("Export", 2), "--actor", "alice")
    assert restored.returncode == 0, restored.stderr
    assert f"restored export {ids.encode('Export', 2)}" in restored.stdout
    assert (await gc_cli("mark")).returncode == 0
    assert (await gc_cli("archive", "--actor", "ops-oncall")).returncode == 0
    deleted = await gc_cli("delete", "--days-in-archive", "0", "--yes")
    assert "deleted 2 export(s)" in deleted.stdout
    assert await states(db) == {1: "deleted", 2: "deleted", 3: "none"}
    assert (await gc_cli("restore", ids.encode("Export", 1))).returncode == 1
    with pytest.raises(SystemExit) as refused_id:  # a row number is not an id the API shows
        main(["gc", "restore", "1"])
    assert refused_id.value.code == 2
    # The audit says who: alice's account, or the operator's name on the run.
    page = await admin.audit(db=db, first=100, after=None)
    newest_last = reversed(page.items)
    by_action = {(entry.action, entry.export_id): who for _, (entry, who) in newest_last}
    assert by_action[("restore", 2)] == "alice"
    assert str(by_action[("archive", 2)]).startswith("cli (ops-oncall) on ")


async def test_the_cli_waits_its_turn_and_honours_keep_latest(
    db: Database,
    queue: ArqQueue,
    store: MediaStore,
    alice: Actor,
    media: dict[str, Path],
    gc_cli: GcCli,
) -> None:
    await exports_on_disk(db, queue, store, alice, media["clip"], count=4)
    # An admin's run over GraphQL holds the lock: the CLI says who, and changes nothing.
    run = await gc_runs.acquire(db=db, action="archive", actor=None, holder="api (root)", params={})
    busy = await gc_cli("full-cycle", "--yes", "--keep-latest", "2")
    assert busy.returncode == 3
    assert f"GC run {run.id} (api (root)) has been running since" in busy.stderr
    assert await states(db) == {1: "none", 2: "none", 3: "none", 4: "none"}
    await gc_runs.release(db, run.id or 0, gc_runs.Tally(), status=gc_runs.DONE)
    # --keep-latest 2 keeps v3 and v4 out of the cycle (it used to be ignored).
    done = await gc_cli("full-cycle", "--yes", "--keep-latest", "2", "--days-in-archive", "0")
    assert done.returncode == 0, done.stderr
    assert "marked 2, archived 2" in done.stdout
    assert await states(db) == {1: "deleted", 2: "deleted", 3: "none", 4: "none"}

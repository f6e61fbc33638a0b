"""`editgraph import` as an operator runs it: a dry run first (a table, every problem, nothing
written), then for real, then an undo; a second run with an ops map brings in what the first
left out; helpful refusals for what cannot work."""

import asyncio
import json
from pathlib import Path

import pytest

from editgraph.cli import main
from editgraph.settings import Settings
from models.db import Database
from tests.helpers.db import SQLITE_ONLY
from tests.helpers.vfxb import make_vfxb, tree

pytestmark = SQLITE_ONLY  # the command line; the domain is tested on both databases


@pytest.fixture
def cli_env(db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("EDITGRAPH_DATABASE_URL", db.url)
    monkeypatch.setenv("EDITGRAPH_MEDIA_ROOT", str(settings.media_root))
    return settings


async def editgraph(*args: str) -> int:
    return await asyncio.to_thread(main, list(args))


async def test_dry_run_then_import_then_undo(
    cli_env: Settings,
    media: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = make_vfxb(tmp_path / "vfxb", media)
    data, uploads = str(source.data), str(source.uploads)
    assert await editgraph("import", "vfxb", data, uploads, "--dry-run") == 0
    dry = capsys.readouterr().out
    assert "would create" in dry and "dry run: nothing was written" in dry
    assert ("5 problem(s):" in dry and "unknown op type" not in dry.lower()) or "sparkle" in dry
    media_root = cli_env.media_root
    assert tree(media_root / "videos") == {} if (media_root / "videos").exists() else True

    assert await editgraph("import", "vfxb", data, uploads, "--actor", "ops") == 0
    done = capsys.readouterr().out
    table = {line.split()[0]: line.split()[1:] for line in done.splitlines()[1:7]}
    assert table["project"][0] == "3" and table["video"][0] == "2" and table["export"][0] == "3"
    run_id = int(done.split("import run ")[1].split(":")[0])
    assert len(tree(media_root / "export")) == 3

    # The op nobody knows, renamed, brings the last project in on a second run.
    ops_map = tmp_path / "ops.json"
    ops_map.write_text(json.dumps({"sparkle": {"type": "grayscale", "params": {}}}))
    assert await editgraph("import", "vfxb", data, uploads, "--ops-map", str(ops_map)) == 0
    second = capsys.readouterr().out
    table = {line.split()[0]: line.split()[1:] for line in second.splitlines()[1:7]}
    assert table["project"][:1] == ["1"]  # p4, and nothing else again
    assert table["project"][-2] == "3"  # already there
    second_run = int(second.split("import run ")[1].split(":")[0])

    # Undo the first run: p4 was imported by the second on the first's video, so it blocks.
    assert await editgraph("import", "undo", str(run_id)) == 1
    blocked = capsys.readouterr().err
    assert "was not undone; nothing was removed" in blocked and "uses video" in blocked
    assert await editgraph("import", "undo", str(second_run)) == 0
    assert "undone: removed 1 project(s), 2 version(s), 1 op(s)" in capsys.readouterr().out
    assert await editgraph("import", "undo", str(run_id)) == 0
    assert tree(media_root / "export") == {}


async def test_refusals_say_what_to_do(
    cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], media: dict[str, Path]
) -> None:
    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(media["clip"].read_bytes())
    with pytest.raises(SystemExit, match="--exports-from needs --projects"):
        await editgraph("import", "folder", str(folder), "--owner", "x", "--exports-from", ".")
    assert await editgraph("import", "folder", str(folder), "--owner", "nobody") == 2
    said = capsys.readouterr()
    assert "no user named 'nobody'; create it first" in said.err and said.out == ""
    with pytest.raises(SystemExit, match="is not a folder"):
        await editgraph("import", "folder", str(tmp_path / "missing"), "--owner", "x")

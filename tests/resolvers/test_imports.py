"""Importing a VFXB backend and a folder: what comes in matches the records and the bytes,
exports are pinned, reference counts are counted, a second run makes nothing, a dry run
changes nothing, and an undo takes the run back."""

from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import SQLModel, col, select

from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from models.tables import Blob, Export, ImportOrigin, Project, Render, User, Video
from resolvers import ids, import_sources, import_undo, imports, versions
from resolvers.import_records import Options, Report
from resolvers.presets import export_preset
from resolvers.users import Actor
from tests.helpers.vfxb import make_vfxb, tree

PRESET = export_preset(crf=20, x264_preset="fast")


async def rows(db: Database) -> dict[str, int]:
    """How many rows each table holds: the database's state, to compare."""
    counted = {}
    async with db.read() as session:
        connection = await session.connection()
        for table in SQLModel.metadata.sorted_tables:
            counted[table.name] = (
                await connection.execute(sa_select(func.count()).select_from(table))
            ).scalar_one()
    return counted


async def vfxb_run(
    db: Database, store: MediaStore, root: Path, *, dry_run: bool = False, pin: bool = True
) -> Report:
    source = import_sources.vfxb(root / "data", root / "uploads")
    options = Options(pin=pin, dry_run=dry_run, operator="test", export_preset=PRESET)
    return await imports.run(db=db, store=store, queue=None, source=source, options=options)


async def project_named(db: Database, name: str) -> Project:
    async with db.read() as session:
        return (await session.exec(select(Project).where(Project.name == name))).one()


@pytest.mark.both_storages
async def test_a_vfxb_backend_comes_in_as_its_records_and_bytes_say(
    db: Database, store: MediaStore, media: dict[str, Path], tmp_path: Path
) -> None:
    source = make_vfxb(tmp_path / "vfxb", media)
    before_media = tree(source.uploads)
    report = await vfxb_run(db, store, tmp_path / "vfxb")
    assert report.created["user"] == 2  # vfxb-u1, vfxb-u2 (no tokens)
    assert (report.created["video"], report.already["video"], report.skipped["video"]) == (2, 1, 1)
    assert (report.created["project"], report.skipped["project"]) == (3, 2)
    assert report.created["export"] == 3
    problems = "\n".join(report.problems)
    assert "video v4: its bytes do not match its recorded sha256" in problems
    assert "project p3 (Bad source): not imported, its source video v4" in problems
    assert "project p4 (Sparkles): not imported: version 1, op 0" in problems
    assert "sparkle" in problems
    assert "export e4 (version 0): its file is missing" in problems
    assert "export e5: status 'failed'" in problems
    assert tree(source.uploads) == before_media  # the source is never changed

    async with db.read() as session:
        names = set((await session.exec(select(User.name))).all())
        blobs = (await session.exec(select(Blob))).all()
        videos = (await session.exec(select(Video))).all()
    assert {"vfxb-u1", "vfxb-u2"} <= names
    # Reference counts are counted (two videos), never copied (v1 recorded 7).
    assert {b.sha256: b.ref_count for b in blobs} == {
        b.sha256: sum(1 for v in videos if v.blob_id == b.id) for b in blobs
    }
    assert sorted(b.ref_count for b in blobs) == [1, 1]
    for blob in blobs:
        assert store.exists(blob.key)

    holiday = await project_named(db, "Holiday")
    assert holiday.id is not None and holiday.current_version == 2
    owner = Actor(id=holiday.owner_id, name="vfxb-u1", is_admin=False)
    effective = await versions.effective_ops(db=db, actor=owner, project_id=holiday.id, up_to=None)
    assert [(o.type, o.params) for o in effective] == [
        ("gaussian-blur", {"radius": 5.0}),
        ("brightness", {"brightness": 20.0}),
        ("trim", {"start": 0.5, "end": 1.5}),
    ]
    v1 = await versions.effective_ops(db=db, actor=owner, project_id=holiday.id, up_to=1)
    assert [o.type for o in v1] == ["gaussian-blur", "brightness"]
    async with db.read() as session:
        exports = (await session.exec(select(Export).order_by(col(Export.id)))).all()
        done = (await session.exec(select(Render).where(col(Render.status) == "done"))).all()
    assert all(e.pinned for e in exports) and len(exports) == 3
    assert all(e.gc_state == "none" for e in exports)  # the archived one, pinned, came back
    assert holiday.latest_export_id == max(e.id or 0 for e in exports if e.project_id == holiday.id)
    for render in done:
        assert render.output_key is not None and store.exists(render.output_key)
    copy = await project_named(db, "Copy")
    assert copy.source_video_id == holiday.source_video_id  # the duplicate is one video
    assert copy.latest_export_id is None  # its current version has no export

    # A second run finds everything there and makes nothing.
    counts = await rows(db)
    again = await vfxb_run(db, store, tmp_path / "vfxb")
    assert sum(again.created.values()) == 0
    assert (again.already["project"], again.already["video"]) == (3, 3)
    counted = await rows(db)
    assert counted["import_runs"] == counts["import_runs"] + 1
    assert {k: v for k, v in counted.items() if k != "import_runs"} == {
        k: v for k, v in counts.items() if k != "import_runs"
    }


async def test_a_dry_run_writes_nothing_and_says_what_would_come(
    db: Database, store: MediaStore, media: dict[str, Path], tmp_path: Path
) -> None:
    make_vfxb(tmp_path / "vfxb", media)
    before, media_before = await rows(db), tree(store.root)
    dry = await vfxb_run(db, store, tmp_path / "vfxb", dry_run=True)
    assert dry.run_id is None
    assert (dry.created["video"], dry.created["project"], dry.created["export"]) == (2, 3, 3)
    assert dry.created_bytes["video"] == (
        media["clip"].stat().st_size + media["other"].stat().st_size
    )
    assert len(dry.problems) == 5
    assert await rows(db) == before and tree(store.root) == media_before
    real = await vfxb_run(db, store, tmp_path / "vfxb")
    assert (real.created, real.problems) == (dry.created, dry.problems)


async def test_no_pin_keeps_the_sources_own_pins_and_its_archive(
    db: Database, store: MediaStore, media: dict[str, Path], tmp_path: Path
) -> None:
    make_vfxb(tmp_path / "vfxb", media)
    await vfxb_run(db, store, tmp_path / "vfxb", pin=False)
    async with db.read() as session:
        exports = (await session.exec(select(Export))).all()
    state = {(e.version, e.pinned, e.gc_state) for e in exports}
    assert state == {(1, False, "none"), (2, True, "none"), (1, False, "archived")}
    archived = next(e for e in exports if e.gc_state == "archived")
    assert archived.archive_key is not None and store.exists(archived.archive_key)


@pytest.mark.both_storages
async def test_an_undo_restores_the_state_before_the_run(
    db: Database, store: MediaStore, media: dict[str, Path], tmp_path: Path
) -> None:
    make_vfxb(tmp_path / "vfxb", media)
    before = await rows(db)
    report = await vfxb_run(db, store, tmp_path / "vfxb")
    assert report.run_id is not None
    undone = await import_undo.undo(db=db, store=store, run_id=report.run_id)
    assert undone.blocked == []
    assert (undone.removed["project"], undone.removed["video"], undone.removed["user"]) == (3, 2, 2)
    after = await rows(db)
    assert after["import_runs"] == before["import_runs"] + 1  # the run stays, marked undone
    assert {k: v for k, v in after.items() if k not in ("import_runs", "blobs")} == {
        k: v for k, v in before.items() if k not in ("import_runs", "blobs")
    }
    async with db.read() as session:
        blobs = (await session.exec(select(Blob))).all()
    assert all(b.ref_count == 0 and b.unreferenced_at is not None for b in blobs)  # for the GC
    assert [e.key for e in store.listing("export")] == []
    assert (await import_undo.undo(db=db, store=store, run_id=report.run_id)).blocked


async def test_an_undo_is_refused_once_someone_built_on_the_import(
    db: Database, store: MediaStore, media: dict[str, Path], tmp_path: Path, queue: ArqQueue
) -> None:
    make_vfxb(tmp_path / "vfxb", media)
    report = await vfxb_run(db, store, tmp_path / "vfxb")
    assert report.run_id is not None
    holiday = await project_named(db, "Holiday")
    assert holiday.id is not None
    owner = Actor(id=holiday.owner_id, name="vfxb-u1", is_admin=False)
    await versions.append_ops(
        db=db,
        queue=queue,
        actor=owner,
        project_id=holiday.id,
        raw_ops=[{"type": "grayscale", "params": {}}],
        expected_version=2,
    )
    before = await rows(db)
    undone = await import_undo.undo(db=db, store=store, run_id=report.run_id)
    assert undone.blocked == [
        f"project {ids.encode('Project', holiday.id)} (Holiday) has versions newer than the import"
    ]
    assert await rows(db) == before


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_folder_comes_in_with_projects_and_exports_matched_by_name(
    db: Database, store: MediaStore, media: dict[str, Path], tmp_path: Path, alice: Actor
) -> None:
    folder, finished = tmp_path / "library", tmp_path / "library" / "finished"
    (folder / "2024" / "summer").mkdir(parents=True)
    finished.mkdir()
    (folder / "2024" / "summer" / "holiday.mp4").write_bytes(media["clip"].read_bytes())
    (folder / "trailer.mov").write_bytes(media["other"].read_bytes())
    (folder / "holiday again.mp4").write_bytes(media["clip"].read_bytes())  # a duplicate
    (folder / "notes.txt").write_text("shot list")
    (finished / "holiday.final.mp4").write_bytes(media["silent"].read_bytes())
    source = import_sources.folder(folder, owner="alice", projects=True, exports_from=finished)
    options = Options(operator="test", export_preset=PRESET)
    report = await imports.run(db=db, store=store, queue=None, source=source, options=options)
    assert (report.created["video"], report.already["video"], report.skipped["video"]) == (2, 1, 1)
    assert "notes.txt" in "\n".join(report.problems) and "text, not a video" in "\n".join(
        report.problems
    )
    assert report.created["project"] == 3  # one per video file, the duplicate too
    assert report.created["export"] == 1  # holiday.final.mp4, matched to holiday.mp4 by name
    async with db.read() as session:
        projects = (await session.exec(select(Project))).all()
        exports = (await session.exec(select(Export))).all()
        origins = (await session.exec(select(ImportOrigin))).all()
    assert sorted(p.name for p in projects) == ["holiday", "holiday again", "trailer"]
    assert all(p.owner_id == alice.id for p in projects)
    [export] = exports
    holiday = next(p for p in projects if p.name == "holiday")
    assert (export.project_id, export.version, export.pinned) == (holiday.id, 0, True)
    assert holiday.latest_export_id == export.id
    assert len({p.source_video_id for p in projects if p.name.startswith("holiday")}) == 1
    assert {o.kind for o in origins} == {"video", "project", "export"}

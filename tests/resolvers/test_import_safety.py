"""What an import and its undo must never do: take a file or a reference anyone else keeps,
undo what a user built on it, leave a stray file, or crash on a record that is odd."""

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from jobs.queue import ArqQueue
from models.db import Database
from models.store import MediaStore
from models.tables import Blob, EditOperation, Export, ImportRun, Project, Render, Video, utcnow
from resolvers import (
    exports,
    import_sources,
    import_undo,
    imports,
    projects,
    renders,
    versions,
    videos,
)
from resolvers.import_records import Options, Report
from resolvers.presets import export_preset
from resolvers.users import Actor
from tests.helpers.domain import stage
from tests.helpers.vfxb import make_vfxb, sha256

PRESET = export_preset(crf=20, x264_preset="fast")


async def folder_run(db: Database, store: MediaStore, folder: Path, owner: str) -> Report:
    source = import_sources.folder(folder, owner=owner, projects=True)
    options = Options(operator="test", export_preset=PRESET)
    return await imports.run(db=db, store=store, queue=None, source=source, options=options)


async def vfxb_run(db: Database, store: MediaStore, root: Path, **options: object) -> Report:
    source = import_sources.vfxb(root / "data", root / "uploads")
    chosen = Options(operator="test", export_preset=PRESET, **options)  # type: ignore[arg-type]
    return await imports.run(db=db, store=store, queue=None, source=source, options=chosen)


def edit_records(root: Path, name: str, change: object) -> None:
    path = root / "data" / f"{name}.json"
    records = json.loads(path.read_text())
    change(records)  # type: ignore[operator]
    path.write_text(json.dumps(records))


async def test_an_undo_never_takes_a_reference_someone_else_holds(
    db: Database,
    store: MediaStore,
    queue: ArqQueue,
    media: dict[str, Path],
    tmp_path: Path,
    alice: Actor,
    bob: Actor,
) -> None:
    mine, _ = await videos.upload_video(
        db=db, store=store, queue=queue, actor=bob, staged=stage(store, media["clip"])
    )
    folder = tmp_path / "library"
    folder.mkdir()
    shutil.copyfile(media["clip"], folder / "clip.mp4")
    report = await folder_run(db, store, folder, "alice")
    assert report.run_id is not None and report.created["video"] == 1
    async with db.read() as session:
        project = (await session.exec(select(Project).where(Project.owner_id == alice.id))).one()
    assert project.id is not None
    # Alice deletes the project, then the video (which drops her reference).
    await projects.delete_project(db=db, queue=queue, actor=alice, project_id=project.id)
    await videos.delete_video(db=db, actor=alice, video_id=project.source_video_id)
    undone = await import_undo.undo(db=db, store=store, run_id=report.run_id)
    assert undone.blocked == []
    async with db.read() as session:
        blob = await session.get(Blob, mine.blob_id)
    assert blob is not None and blob.ref_count == 1 and blob.unreferenced_at is None
    assert store.exists(blob.key)  # bob's bytes stay


async def test_an_undo_is_refused_for_what_users_did_with_the_import(
    db: Database, store: MediaStore, queue: ArqQueue, media: dict[str, Path], tmp_path: Path
) -> None:
    make_vfxb(tmp_path / "vfxb", media)
    report = await vfxb_run(db, store, tmp_path / "vfxb")
    assert report.run_id is not None
    async with db.read() as session:
        holiday = (await session.exec(select(Project).where(Project.name == "Trailer"))).one()
        imported = (await session.exec(select(Export).where(Export.project_id == holiday.id))).one()
    assert holiday.id is not None
    owner = Actor(id=holiday.owner_id, name="vfxb-u1", is_admin=False)
    # An export of version 0 asked for since, and the owner's pin change: both block.
    await renders.request_export(
        db=db, queue=queue, actor=owner, project_id=holiday.id, version=0, preset=PRESET
    )
    await exports.set_pinned(
        db=db,
        store=store,
        actor=owner,
        project_id=holiday.id,
        version=imported.version,
        pinned=False,
    )
    undone = await import_undo.undo(db=db, store=store, run_id=report.run_id)
    text = "\n".join(undone.blocked)
    assert "has an export made after the import" in text
    assert "was pinned or unpinned since" in text
    # The owner uploading the same bytes again makes the video theirs: that blocks too.
    uploaded = await videos.upload_video(
        db=db,
        store=store,
        queue=queue,
        actor=owner,
        staged=stage(store, tmp_path / "vfxb" / "uploads" / "videos" / "b.mp4"),
    )
    assert uploaded[1]  # deduplicated onto the imported video
    undone = await import_undo.undo(db=db, store=store, run_id=report.run_id)
    assert any("was uploaded again by its owner" in b for b in undone.blocked)


async def test_a_run_that_stopped_midway_is_finished_by_running_it_again(
    db: Database,
    store: MediaStore,
    media: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_vfxb(tmp_path / "vfxb", media)
    real_bring = store.bring
    calls = {"n": 0}

    def failing_bring(path: Path, key: str, **kw: bool) -> int:
        calls["n"] += 1
        if key.startswith("export/") and calls["n"] > 4:  # the second project's
            raise OSError("the disk went away")
        return real_bring(path, key, **kw)

    monkeypatch.setattr(store, "bring", failing_bring)
    with pytest.raises(OSError, match="the disk went away"):
        await vfxb_run(db, store, tmp_path / "vfxb")
    async with db.read() as session:
        failed = (await session.exec(select(ImportRun))).one()
        hidden = (
            await session.exec(select(Project).where(col(Project.deleted_at).is_not(None)))
        ).all()
        shown = (await session.exec(select(Project))).all()
    assert failed.status == "failed" and hidden == []
    # Nothing of the project that did not come in stayed behind, file or row.
    on_disk = {e.key for e in store.listing("export")}
    async with db.read() as session:
        rows = {e.project_id for e in (await session.exec(select(Export))).all()}
    assert {int(k.split("/")[1]) for k in on_disk} <= rows
    assert len(shown) >= 1
    monkeypatch.setattr(store, "bring", real_bring)
    again = await vfxb_run(db, store, tmp_path / "vfxb")
    assert again.created["project"] + again.already["project"] == 3
    async with db.read() as session:
        exported = (await session.exec(select(Export))).all()
        keys = {e.id: (await session.get(Render, e.render_id)) for e in exported}
    for export in exported:
        render = keys[export.id]
        assert render is not None and render.output_key is not None
        assert store.exists(render.output_key)
    # Each export's bytes are its own file's, never a leftover's.
    sources = {sha256(p) for p in (tmp_path / "vfxb" / "uploads").rglob("*_final.mp4")}
    for export in exported:
        render = keys[export.id]
        assert render is not None and render.output_key is not None
        assert sha256(store.path(render.output_key)) in sources


async def test_odd_records_keep_their_project_out_without_crashing_the_run(
    db: Database, store: MediaStore, media: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "vfxb"
    make_vfxb(root, media)
    edit_records(root, "projects", lambda r: r["p2"].update(currentVersion=100_000_000))
    edit_records(
        root,
        "editOperations",
        lambda r: r.extend(
            [
                {
                    "projectId": "p5",
                    "version": 0,
                    "type": "brightness",
                    "params": {"brightness": 1},
                },
                {
                    "projectId": "p1",
                    "version": "2",
                    "type": "flip",
                    "params": {"axis": "horizontal"},
                },
            ]
        ),
    )
    report = await vfxb_run(db, store, root)
    problems = "\n".join(report.problems)
    assert "project p2 (Trailer): not imported: it claims 100000000 versions" in problems
    assert "project p5 (Copy): not imported: op ? has version 0" in problems
    async with db.read() as session:
        holiday = (await session.exec(select(Project).where(Project.name == "Holiday"))).one()
        ops = (
            await session.exec(
                select(EditOperation.type).where(
                    EditOperation.project_id == holiday.id, EditOperation.version == 2
                )
            )
        ).all()
    assert list(ops) == ["trim", "flip"]  # "2" is version 2


async def test_a_concat_names_the_owners_imported_video(
    db: Database, store: MediaStore, media: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "vfxb"
    make_vfxb(root, media)
    edit_records(
        root,
        "editOperations",
        lambda r: r.extend(
            [
                {"projectId": "p2", "version": 1, "type": "concat", "params": {"videoId": "v1"}},
                {"projectId": "p3", "version": 1, "type": "concat", "params": {"videoId": "v1"}},
            ]
        ),
    )
    edit_records(root, "projects", lambda r: r["p3"].update(videoId="v2", userId="u2"))
    edit_records(root, "videos", lambda r: r[1].update(userId="u1"))
    dry = await vfxb_run(db, store, root, dry_run=True)
    assert not any(p.startswith("project p2 ") for p in dry.problems), dry.problems
    report = await vfxb_run(db, store, root)
    assert not any(p.startswith("project p2 ") for p in report.problems)
    async with db.read() as session:
        trailer = (await session.exec(select(Project).where(Project.name == "Trailer"))).one()
        holiday = (await session.exec(select(Project).where(Project.name == "Holiday"))).one()
        concat = (
            await session.exec(
                select(EditOperation).where(
                    EditOperation.project_id == trailer.id, EditOperation.type == "concat"
                )
            )
        ).one()
    assert concat.video_id == holiday.source_video_id


async def test_a_second_run_after_the_owner_deleted_an_imported_video_creates_nothing(
    db: Database,
    store: MediaStore,
    queue: ArqQueue,
    media: dict[str, Path],
    tmp_path: Path,
    alice: Actor,
) -> None:
    folder = tmp_path / "library"
    folder.mkdir()
    shutil.copyfile(media["clip"], folder / "a.mp4")
    source = import_sources.folder(folder, owner="alice")
    options = Options(operator="test", export_preset=PRESET)
    await imports.run(db=db, store=store, queue=None, source=source, options=options)
    async with db.read() as session:
        video = (await session.exec(select(Video).where(Video.owner_id == alice.id))).one()
    assert video.id is not None
    await videos.delete_video(db=db, actor=alice, video_id=video.id)
    shutil.copyfile(media["other"], folder / "b.mp4")
    source = import_sources.folder(folder, owner="alice")
    again = await imports.run(db=db, store=store, queue=None, source=source, options=options)
    assert (again.created["video"], again.already["video"]) == (1, 1)  # a.mp4 stays deleted


async def test_an_import_of_bytes_the_owner_deleted_brings_the_video_back(
    db: Database,
    store: MediaStore,
    queue: ArqQueue,
    media: dict[str, Path],
    tmp_path: Path,
    alice: Actor,
) -> None:
    video, _ = await videos.upload_video(
        db=db, store=store, queue=queue, actor=alice, staged=stage(store, media["clip"])
    )
    assert video.id is not None
    project = await versions.create_project(
        db=db, queue=queue, actor=alice, video_id=video.id, name="p"
    )
    assert project.id is not None
    await projects.delete_project(db=db, queue=queue, actor=alice, project_id=project.id)
    await videos.delete_video(db=db, actor=alice, video_id=video.id)  # soft: a project names it
    folder = tmp_path / "library"
    folder.mkdir()
    shutil.copyfile(media["clip"], folder / "again.mp4")
    report = await folder_run(db, store, folder, "alice")
    assert report.problems == [] and report.already["video"] == 1
    async with db.read() as session:
        back = await session.get(Video, video.id)
        blob = await session.get(Blob, video.blob_id)
    assert back is not None and back.deleted_at is None
    assert blob is not None and blob.ref_count == 1


async def test_one_import_of_a_source_at_a_time(
    db: Database, store: MediaStore, media: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "vfxb"
    make_vfxb(root, media)
    source = import_sources.vfxb(root / "data", root / "uploads")
    async with db.write() as session:
        session.add(ImportRun(source_kind="vfxb", source=source.label, operator="other"))
    with pytest.raises(imports.ImportBusyError, match="of this source is running"):
        await vfxb_run(db, store, root)
    async with db.write() as session:  # silent for long: it was killed; this one may start
        await session.exec(update(ImportRun).values(heartbeat_at=utcnow() - timedelta(hours=1)))
    assert (await vfxb_run(db, store, root)).created["project"] == 3

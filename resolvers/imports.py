"""Bringing existing data in (``editgraph import``): users, videos, projects with their
versions and ops, and finished exports, read from a source (``resolvers/import_sources.py``)
and written by the same rules as the API's.

The rules: bytes are trusted, records are not (a file is hashed and probed; a recorded SHA-256
that does not match is a problem); a project comes in whole or not at all, in one
transaction; exports are pinned unless asked otherwise; reference counts are counted, never
copied; a second run of the same import creates nothing (each row remembers its origin); a
dry run writes nothing; and a run can be undone while nobody has built on it.
"""

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete as delete_rows
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models import keys
from models.db import Database
from models.states import GcState, RenderKind
from models.store import MediaStore
from models.tables import (
    Blob,
    EditOperation,
    Export,
    ImportOrigin,
    ImportRun,
    Project,
    Render,
    User,
    Version,
    Video,
    utcnow,
)
from resolvers import ids, lifecycle, ops, renders, versions
from resolvers.errors import BadInputError, InvalidMediaError
from resolvers.import_records import (
    ExportIn,
    Options,
    ProjectIn,
    Report,
    Source,
    VideoIn,
)
from resolvers.presets import PROXY, Preset
from resolvers.probe import Probe, probe
from resolvers.projects import clean_name
from resolvers.queue import JobQueue
from resolvers.users import Actor
from resolvers.videos import reference_blob, video_row

log = logging.getLogger(__name__)
# A running import renews its heartbeat after each batch; silent this long, it was stopped.
STOPPED_AFTER = timedelta(minutes=10)
BATCH = 64  # records looked at together (their files inspected at once), then written
INSPECTING = max(2, (os.cpu_count() or 1) * 2)  # files hashed and probed at once
CHUNK = 1024 * 1024
STAND_IN = 2**30  # a dry run's made-up ids start here (past real rows, within an id's range)


@dataclass
class _Video:
    """A video as this run knows it: imported now, earlier, or found as a duplicate."""

    id: int  # in a dry run, a stand-in
    owner_id: int
    probe_facts: Probe | None
    duration: float
    width: int
    height: int
    sha256: str


@dataclass
class _Built:
    """One version of a project to write: its number, frame, ops (stored form and parsed),
    the chain hash of its effective ops, and how many there are."""

    number: int
    frame: ops.Frame
    stored: list[dict[str, Any]]
    chain: str
    batch: list[ops.Op]
    op_count: int


Progress = Callable[[str], None]


def origin_key(source_id: str) -> str:
    """How an origin is stored: as it is, or a long one (a deep path) as its hash."""
    if len(source_id) <= 400:
        return source_id
    return "sha256:" + hashlib.sha256(source_id.encode()).hexdigest()


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in chunks (never whole in memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def run(
    *,
    db: Database,
    store: MediaStore,
    queue: JobQueue | None,
    source: Source,
    options: Options,
    progress: Progress = lambda _: None,
) -> Report:
    """Import ``source``; with ``options.dry_run`` nothing is written, and the report says
    what would be."""
    report = Report(run_id=None, dry_run=options.dry_run)
    report.problems += source.problems
    run_row: ImportRun | None = None
    if not options.dry_run:
        async with db.write() as session:
            # One import of a source at a time: a second waits here, then finds the first.
            await db.hold(session, f"import:{source.kind}")
            busy = (
                await session.exec(
                    select(ImportRun).where(
                        ImportRun.source == source.label[:2000],
                        ImportRun.status == "running",
                        col(ImportRun.heartbeat_at) > utcnow() - STOPPED_AFTER,
                    )
                )
            ).first()
            if busy is not None:
                raise ImportBusyError(busy)
            run_row = ImportRun(
                source_kind=source.kind.partition(":")[0],
                source=source.label[:2000],
                operator=options.operator[:200],
            )
            session.add(run_row)
        report.run_id = run_row.id
    importer = _Importer(db, store, queue, source, options, report, progress)
    try:
        await importer.users()
        await importer.videos()
        await importer.projects()
    except BaseException:
        if run_row is not None:
            await _finish(db, run_row, report, "failed")
        raise
    if run_row is not None:
        await _finish(db, run_row, report, "done")
    return report


class ImportBusyError(Exception):
    """Another import of the same source is running."""

    def __init__(self, run: ImportRun) -> None:
        since = run.started_at.strftime("%Y-%m-%d %H:%M")
        super().__init__(
            f"import run {run.id} of this source is running (since {since} UTC, by "
            f"{run.operator}); wait for it, or run this once it has stopped"
        )


def stopped(run: ImportRun) -> bool:
    """Whether a run marked running has not been heard from for a while (it was killed)."""
    return run.status == "running" and run.heartbeat_at <= utcnow() - STOPPED_AFTER


async def _finish(db: Database, run_row: ImportRun, report: Report, status: str) -> None:
    async with db.write() as session:
        await session.exec(
            update(ImportRun)
            .where(col(ImportRun.id) == run_row.id)
            .values(
                status=status,
                finished_at=utcnow(),
                summary={
                    "created": dict(report.created),
                    "bytes": dict(report.created_bytes),
                    "already": dict(report.already),
                    "skipped": dict(report.skipped),
                    "problems": report.problems[:1000],
                },
            )
        )


class _Importer:
    def __init__(
        self,
        db: Database,
        store: MediaStore,
        queue: JobQueue | None,
        source: Source,
        options: Options,
        report: Report,
        progress: Progress,
    ) -> None:
        self.db, self.store, self.queue = db, store, queue
        self.source, self.options, self.report, self.progress = source, options, report, progress
        self.user_ids: dict[str, int] = {}
        self.video_of: dict[str, _Video] = {}
        self.by_sha: dict[tuple[int, str], _Video] = {}
        # Files of the batch at hand, hashed and probed a few at a time: path → (sha, probe).
        self.facts: dict[Path, tuple[str | None, Probe | InvalidMediaError]] = {}
        self._stand_in = 0

    def _next_stand_in(self) -> int:
        self._stand_in += 1  # a dry run's made-up ids: past any real row's
        return STAND_IN + self._stand_in

    async def _heartbeat(self) -> None:
        if self.report.run_id is None:
            return
        async with self.db.write() as session:
            await session.exec(
                update(ImportRun)
                .where(col(ImportRun.id) == self.report.run_id)
                .values(heartbeat_at=utcnow())
            )

    async def _origin(self, session: AsyncSession, kind: str, source_id: str) -> int | None:
        return (
            await session.exec(
                select(ImportOrigin.target_id).where(
                    ImportOrigin.source_kind == self.source.kind,
                    ImportOrigin.kind == kind,
                    ImportOrigin.source_id == origin_key(source_id),
                )
            )
        ).first()

    def _remember(
        self,
        session: AsyncSession,
        kind: str,
        source_id: str,
        target: int,
        version: int | None = None,
    ) -> None:
        assert self.report.run_id is not None
        session.add(
            ImportOrigin(
                run_id=self.report.run_id,
                source_kind=self.source.kind,
                kind=kind,
                source_id=origin_key(source_id),
                target_id=target,
                version=version,
            )
        )

    # Users

    async def users(self) -> None:
        for user in self.source.users:
            async with self.db.read() as session:
                found = (
                    await session.exec(
                        select(User).where(User.name == user.name).order_by(col(User.id))
                    )
                ).first()
            if found is not None and found.id is not None:
                self.user_ids[user.key] = found.id
                if user.create:
                    self.report.already["user"] += 1
                continue
            if not user.create:
                self.report.problem(
                    "user", f"user {user.key}: no account named {user.name!r} (--user-map)"
                )
                continue
            self.report.created["user"] += 1
            if self.options.dry_run:
                self.user_ids[user.key] = self._next_stand_in()
                continue
            async with self.db.write() as session:
                row = User(name=user.name)
                session.add(row)
                await session.flush()
                assert row.id is not None
                self._remember(session, "user", user.key, row.id)
            self.user_ids[user.key] = row.id

    # Videos

    async def videos(self) -> None:
        videos = self.source.videos
        for start in range(0, len(videos), BATCH):
            chunk = videos[start : start + BATCH]
            async with self.db.read() as session:
                known = set(
                    (
                        await session.exec(
                            select(ImportOrigin.source_id).where(
                                ImportOrigin.source_kind == self.source.kind,
                                ImportOrigin.kind == "video",
                                col(ImportOrigin.source_id).in_([v.source_id for v in chunk]),
                            )
                        )
                    ).all()
                )
            fresh = [v.path for v in chunk if v.source_id not in known and v.path is not None]
            await self._inspect(fresh, hashed=True)
            for video in chunk:
                await self._video(video)
            self.progress(f"videos: {start + len(chunk)}/{len(videos)}")
            self.facts.clear()
            await self._heartbeat()

    async def _inspect(self, paths: list[Path], *, hashed: bool) -> None:
        """Hash and probe files a few at a time (the cores ffprobe and hashing want)."""
        gate = asyncio.Semaphore(INSPECTING)

        async def inspect(path: Path) -> None:
            async with gate:
                if not await asyncio.to_thread(path.is_file):
                    return
                sha = await asyncio.to_thread(sha256_of, path) if hashed else None
                try:
                    facts: Probe | InvalidMediaError = await probe(path)
                except InvalidMediaError as exc:
                    facts = exc
                self.facts[path] = (sha, facts)

        await asyncio.gather(*(inspect(p) for p in dict.fromkeys(paths)))

    async def _facts(self, path: Path, *, hashed: bool) -> tuple[str | None, Probe]:
        """A file's SHA-256 (if asked) and probe, inspected already or now;
        ``InvalidMediaError`` if it is not a video."""
        if path not in self.facts:
            await self._inspect([path], hashed=hashed)
        sha, facts = self.facts[path]
        if isinstance(facts, InvalidMediaError):
            raise facts
        return sha, facts

    async def _video(self, video: VideoIn) -> None:
        report = self.report
        owner = self.user_ids.get(video.owner)
        if owner is None:
            report.problem("video", f"video {video.source_id}: its user {video.owner} is not here")
            return
        async with self.db.read() as session:
            earlier = await self._origin(session, "video", video.source_id)
            row = await session.get(Video, earlier) if earlier is not None else None
            blob = await session.get(Blob, row.blob_id) if row is not None else None
        if earlier is not None:  # imported before; its owner may have deleted it since
            report.already["video"] += 1
            if row is None or blob is None or row.id is None or row.deleted_at is not None:
                return  # deleted by its owner: it does not come back
            known = _Video(row.id, owner, None, row.duration, row.width, row.height, blob.sha256)
            self.video_of[video.source_id] = known
            self.by_sha[(owner, blob.sha256)] = known
            return
        if video.path is None or not video.path.is_file():
            report.problem(
                "video", f"video {video.source_id}: the file {video.filename} is missing"
            )
            return
        try:
            found, facts = await self._facts(video.path, hashed=True)
        except InvalidMediaError as exc:
            report.problem("video", f"video {video.source_id} ({video.filename}): {exc.message}")
            return
        sha: str = found if found is not None else await asyncio.to_thread(sha256_of, video.path)
        if video.claimed_sha256 and video.claimed_sha256.lower() != sha:
            report.problem(
                "video",
                f"video {video.source_id}: its bytes do not match its recorded sha256 "
                f"({video.claimed_sha256[:12]}… recorded, {sha[:12]}… read)",
            )
            return
        twin = self.by_sha.get((owner, sha)) or await self._owned_twin(owner, sha, video, facts)
        if twin is not None:  # the same bytes for the same user: one video, as an upload does
            report.already["video"] += 1
            self.video_of[video.source_id] = twin
            if not self.options.dry_run and twin.id < STAND_IN:
                async with self.db.write() as session:
                    self._remember(session, "video", video.source_id, twin.id)
            return
        size = video.path.stat().st_size
        report.created["video"] += 1
        if self.options.dry_run:
            made = _Video(
                self._next_stand_in(), owner, facts, facts.duration, facts.width, facts.height, sha
            )
            if not await self._blob_exists(sha):
                report.created_bytes["video"] += size
        else:
            made = await self._store_video(video, owner, sha, facts)
        self.video_of[video.source_id] = made
        self.by_sha[(owner, sha)] = made

    async def _owned_twin(
        self, owner: int, sha: str, video: VideoIn, facts: Probe
    ) -> _Video | None:
        """The owner's video of these bytes, if there is one; one they deleted (a deleted
        project still names it) comes back, as an upload of the bytes brings it back."""
        async with self.db.read() as session:
            row = (
                await session.exec(
                    select(Video)
                    .join(Blob, col(Blob.id) == col(Video.blob_id))
                    .where(Video.owner_id == owner, Blob.sha256 == sha)
                )
            ).first()
        if row is None or row.id is None:
            return None
        if row.deleted_at is not None and not self.options.dry_run:
            assert video.path is not None
            key = keys.source(sha, facts.extension)
            async with self.db.write() as session:
                revived = await session.exec(
                    update(Video)
                    .where(col(Video.id) == row.id, col(Video.deleted_at).is_not(None))
                    .values(deleted_at=None)
                    .returning(col(Video.id))
                )
                if revived.scalar_one_or_none() is not None:
                    size = video.path.stat().st_size
                    await reference_blob(self.db, session, sha, key, size)
                    await asyncio.to_thread(
                        self.store.bring, video.path, key, link=self.options.link
                    )
        return _Video(row.id, owner, None, row.duration, row.width, row.height, sha)

    async def _blob_exists(self, sha: str) -> bool:
        async with self.db.read() as session:
            return (
                await session.exec(select(Blob.id).where(Blob.sha256 == sha))
            ).first() is not None

    async def _store_video(self, video: VideoIn, owner: int, sha: str, facts: Probe) -> _Video:
        assert video.path is not None
        key = keys.source(sha, facts.extension)
        async with self.db.write() as session:
            # The reference first, then the bytes: a GC removing an unreferenced blob of the
            # same bytes meanwhile puts its file back (as an upload does).
            blob_id = await reference_blob(self.db, session, sha, key, video.path.stat().st_size)
            row = video_row(owner, blob_id, video.filename, facts)
            session.add(row)
            await session.flush()
            assert row.id is not None
            self._remember(session, "video", video.source_id, row.id)
            added = await asyncio.to_thread(
                self.store.bring, video.path, key, link=self.options.link
            )
        self.report.created_bytes["video"] += added
        return _Video(row.id, owner, facts, facts.duration, facts.width, facts.height, sha)

    # Projects

    async def projects(self) -> None:
        projects = self.source.projects
        for start in range(0, len(projects), BATCH):
            chunk = projects[start : start + BATCH]
            exports = [e.path for p in chunk for e in p.exports if e.path is not None]
            await self._inspect(exports, hashed=False)
            for project in chunk:
                await self._project(project)
            self.progress(f"projects: {start + len(chunk)}/{len(projects)}")
            self.facts.clear()
            await self._heartbeat()

    async def _project(self, project: ProjectIn) -> None:
        report = self.report
        where = f"project {project.source_id} ({project.name})"
        async with self.db.read() as session:
            if await self._origin(session, "project", project.source_id) is not None:
                report.already["project"] += 1
                return
        owner = self.user_ids.get(project.owner)
        video = self.video_of.get(project.video)
        if owner is None or video is None:
            missing = "its user" if owner is None else f"its source video {project.video}"
            report.problem("project", f"{where}: not imported, {missing} was not imported")
            return
        if project.problems:
            report.problem("project", f"{where}: not imported: " + "; ".join(project.problems[:5]))
            return
        try:
            name = clean_name(project.name or project.source_id)
        except BadInputError:  # too long, or with control characters: a plain name instead
            shown = "".join(c for c in project.source_id if c.isprintable())
            name = f"imported {shown}"[:200]
        built = self._versions(project, video, where)
        if built is None:
            return
        exports = await self._exports(project, where)
        report.created["project"] += 1
        report.created["version"] += len(built)
        report.created["op"] += sum(len(b.stored) for b in built)
        report.created["export"] += len(exports)
        if self.options.dry_run:
            report.created_bytes["export"] += sum(size for _, _, size in exports)
            return
        await self._write_project(project, owner, video, name, built, exports)

    def _versions(self, project: ProjectIn, video: _Video, where: str) -> list["_Built"] | None:
        """Each version 1…current: its frame, its ops and its chain hash (a version with no
        ops renders as its parent); None, with the reasons reported, if any op is unknown or
        does not fit."""
        frame = ops.Frame(video.width, video.height, video.duration)
        chain, count = ops.ROOT_HASH, 0
        built: list[_Built] = []
        problems: list[str] = []
        # A concat may name the owner's own videos only, as appendOps allows.
        durations = {
            v.id: v.duration for v in self.video_of.values() if v.owner_id == video.owner_id
        }
        for number in range(1, project.current_version + 1):
            raw = [self._concat_ids(op) for op in project.ops.get(number, [])]
            batch: list[ops.Op] = []
            if raw:
                parsed, errors = ops.parse(raw)
                if errors:
                    problems += [f"version {number}, op {e.index}: {e.message}" for e in errors]
                else:
                    batch = [op for op in parsed if op is not None]
                    count += len(batch)
                    if count > self.options.limits.ops_per_version:
                        problems.append(f"version {number}: over {count - len(batch)} ops in all")
                    else:
                        frame, misfits = ops.check(batch, frame, durations, self.options.limits)
                        problems += [
                            f"version {number}, op {e.index}: {e.message}" for e in misfits
                        ]
            if len(problems) >= 5:
                break  # enough to say why; a broken record could list millions
            stored = [ops.stored(op) for op in batch]
            if stored:
                chain = ops.chain_hash(chain, stored)
            built.append(_Built(number, frame, stored, chain, batch, count))
        if problems:
            self.report.problem("project", f"{where}: not imported: " + "; ".join(problems[:5]))
            return None
        return built

    def _concat_ids(self, raw: dict[str, Any]) -> dict[str, Any]:
        """A concat names a video of the source: here it names the video imported for it."""
        if raw.get("type") != "concat" or not isinstance(raw.get("params"), dict):
            return raw
        target = self.video_of.get(str(raw["params"].get("videoId")))
        if target is None:
            return raw  # parse reports the id it cannot use
        return {**raw, "params": {**raw["params"], "videoId": ids.encode("Video", target.id)}}

    async def _exports(self, project: ProjectIn, where: str) -> list[tuple[ExportIn, Probe, int]]:
        """The exports that come in with the project: each file there and a video."""
        found = []
        newest: dict[int, ExportIn] = {}
        for export in project.exports:
            label = f"{where}: export {export.source_id} (version {export.version})"
            if not 0 <= export.version <= project.current_version:
                self.report.problem("export", f"{label}: the project has no such version")
                continue
            if export.version in newest:
                self.report.problem("export", f"{label}: a second export of that version")
                continue
            if export.path is None or not export.path.is_file():
                self.report.problem("export", f"{label}: its file is missing")
                continue
            try:
                _, facts = await self._facts(export.path, hashed=False)
            except InvalidMediaError as exc:
                self.report.problem("export", f"{label}: {exc.message}")
                continue
            newest[export.version] = export
            found.append((export, facts, export.path.stat().st_size))
        return found

    async def _write_project(
        self,
        project: ProjectIn,
        owner: int,
        video: _Video,
        name: str,
        built: list[_Built],
        exports: list[tuple[ExportIn, Probe, int]],
    ) -> None:
        actor = Actor(id=owner, name="", is_admin=False)
        preset = self.options.export_preset
        assert preset is not None, "the run's export preset names the imported exports"
        current = built[-1].number if built else 0
        # The project's id is taken first, hidden (deleted) until it is all in: files are
        # placed under keys no other project can ever have, and an import killed midway
        # leaves a hidden project, never a stray file at a key a later project would get.
        async with self.db.write() as session:
            row = Project(
                owner_id=owner,
                name=name,
                source_video_id=video.id,
                current_version=current,
                created_at=project.created_at or utcnow(),
                deleted_at=utcnow(),
            )
            session.add(row)
        assert row.id is not None
        pid = row.id
        placed: list[str] = []
        proxy: Render | None = None
        try:
            async with self.db.write() as session:
                held = await session.get(Project, pid, with_for_update=True)
                assert held is not None
                row = held
                start = ops.Frame(video.width, video.height, video.duration)
                version_rows = {
                    0: versions.new_version(pid, 0, None, actor, start, ops.ROOT_HASH, 0)
                }
                for version in built:
                    version_rows[version.number] = versions.new_version(
                        pid,
                        version.number,
                        version.number - 1,
                        actor,
                        version.frame,
                        version.chain,
                        version.op_count,
                    )
                    for seq, (op, stored) in enumerate(
                        zip(version.batch, version.stored, strict=True)
                    ):
                        session.add(
                            EditOperation(
                                project_id=pid,
                                version=version.number,
                                seq=seq,
                                type=stored["type"],
                                params=stored["params"],
                                video_id=op.video_id if isinstance(op, ops.Concat) else None,
                            )
                        )
                session.add_all(version_rows.values())
                latest: Export | None = None
                for export, facts, _ in sorted(exports, key=lambda e: e[0].version):
                    made = await self._export(
                        session,
                        row,
                        version_rows[export.version],
                        export,
                        facts,
                        preset,
                        video.sha256,
                        placed,
                    )
                    if made.gc_state == GcState.NONE:
                        latest = made
                if latest is not None:
                    row.latest_export_id = latest.id
                if self.options.render_proxies:
                    proxy = await renders.add_render(
                        session,
                        row,
                        version_rows[current],
                        RenderKind.PROXY,
                        PROXY,
                        source=video.sha256,
                    )
                row.deleted_at = None  # all of it is in: it shows
                session.add(row)
                self._remember(session, "project", project.source_id, pid, version=current)
        except BaseException:
            for key in placed:  # nothing of a project that did not come in stays behind
                await asyncio.to_thread(self.store.remove, key)
            with contextlib.suppress(Exception):  # the hidden row goes too, if it can
                async with self.db.write() as session:
                    await session.exec(delete_rows(Project).where(col(Project.id) == pid))
            raise
        if proxy is not None and self.queue is not None:
            await lifecycle.enqueue(self.queue, proxy)

    async def _export(
        self,
        session: AsyncSession,
        project: Project,
        version: Version,
        export: ExportIn,
        facts: Probe,
        preset: Preset,
        source_sha: str,
        placed: list[str],
    ) -> Export:
        assert project.id is not None and export.path is not None
        pinned = self.options.pin or export.pinned  # --no-pin keeps the source's own pins
        archived = export.archived and not pinned  # a pin brings an archived one back
        key = renders.output_key("export", project.id, version.number)
        now = utcnow()
        render = Render(
            project_id=project.id,
            kind=RenderKind.EXPORT,
            version=version.number,
            preset=preset.name,
            content_key=renders.content_key(source_sha, version.ops_hash, preset),
            job_id=renders.job_id(RenderKind.EXPORT, project.id, version.number),
            output_key=key,
            bytes=export.path.stat().st_size,
            width=facts.width,
            height=facts.height,
            duration=facts.duration,
            created_at=export.created_at or now,
            finished_at=export.created_at or now,
        )
        session.add(lifecycle.imported(render))
        await session.flush()
        assert render.id is not None
        row = Export(
            project_id=project.id,
            version=version.number,
            render_id=render.id,
            pinned=pinned,
            created_at=export.created_at or now,
        )
        session.add(row)
        await session.flush()
        assert row.id is not None
        if archived:
            row.gc_state, row.archived_at = GcState.ARCHIVED, now  # its 30 days start now
            row.archive_key = key = keys.archive(row.id, version.number)
            session.add(row)
        # Its key is this new project's: whatever a killed run left there is replaced.
        placed.append(key)
        added = await asyncio.to_thread(
            self.store.bring, export.path, key, replace=True, link=self.options.link
        )
        self.report.created_bytes["export"] += added
        self._remember(session, "export", export.source_id, row.id)
        return row

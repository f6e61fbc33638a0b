"""Random interleavings of edits, exports, pins, GC stages, uploads and the passing of time.

After every step: the latest and every pinned export exist and hold their bytes, blob
reference counts equal the live references, nothing is deleted before its retention, every
audit row matches a change that happened, and files and rows agree.
"""

import asyncio
import secrets
import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, text
from sqlmodel import SQLModel, col, select

from jobs.queue import ArqQueue, connect
from models.db import Database
from models.store import MediaStore
from models.tables import Blob, Export, GcAudit, Project, Render, Video, utcnow
from resolvers import exports, gc, gc_policy, renders, versions, videos
from resolvers.errors import NotFoundError
from resolvers.presets import export_preset
from resolvers.users import Actor, create_user
from tests.helpers.domain import stage
from tests.helpers.gc import finish_export

pytestmark = pytest.mark.slow
PRESET = export_preset(crf=20, x264_preset="fast")


class GcMachine(RuleBasedStateMachine):
    template: Path
    workdir: Path
    media: dict[str, Path]
    redis_url: str
    postgres_url: str | None = None  # set: run on PostgreSQL (emptied per example)

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.root = Path(self.workdir) / f"run-{secrets.token_hex(6)}"
        self.root.mkdir()
        if self.postgres_url:
            self.db = Database(self.postgres_url)
            self.run(self._empty())
        else:
            shutil.copyfile(self.template, self.root / "gc.db")
            self.db = Database(f"sqlite+aiosqlite:///{self.root / 'gc.db'}")
        self.store = MediaStore(self.root / "uploads")
        self.store.ensure_layout()
        self.queue = ArqQueue(connect(self.redis_url))
        self.actor: Actor = self.run(self._start())
        self.changes: Counter[str] = Counter()
        self.contents: dict[int, bytes] = {}  # export id -> the bytes written for it
        self.spares: list[int] = []
        self.mid_stage = False

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _empty(self) -> None:
        tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
        async with self.db.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))

    async def _start(self) -> Actor:
        user, _ = await create_user(db=self.db, name="owner")
        actor = Actor.of(user)
        video, _ = await videos.upload_video(
            db=self.db,
            store=self.store,
            queue=self.queue,
            actor=actor,
            staged=stage(self.store, self.media["clip"]),
        )
        assert video.id is not None
        project = await versions.create_project(
            db=self.db, queue=self.queue, actor=actor, video_id=video.id, name="p"
        )
        assert project.id is not None
        self.project_id = project.id
        return actor

    def teardown(self) -> None:
        self.run(self.queue.close())
        self.run(self.db.dispose())
        self.loop.close()

    # --- what users do -------------------------------------------------------------------

    @rule(level=st.integers(-50, 50))
    def append(self, level: int) -> None:
        self.run(
            versions.append_ops(
                db=self.db,
                queue=self.queue,
                actor=self.actor,
                project_id=self.project_id,
                raw_ops=[{"type": "brightness", "params": {"brightness": level}}],
                expected_version=None,
            )
        )

    @rule(pick=st.integers(0, 100))
    def export(self, pick: int) -> None:
        self.run(self._export(pick))

    async def _export(self, pick: int) -> None:
        async with self.db.read() as s:
            project = await s.get(Project, self.project_id)
        assert project is not None
        version = pick % (project.current_version + 1)
        export, render = await renders.request_export(
            db=self.db,
            queue=self.queue,
            actor=self.actor,
            project_id=self.project_id,
            version=version,
            preset=PRESET,
        )
        if export.gc_state != "none" or render.status == "done":
            return
        data = f"export {export.id} v{version}".encode() * 50
        # Exports finish in whatever order they were asked for: latest is the newest version.
        await finish_export(self.db, self.queue, self.store, export, data=data)
        assert export.id is not None
        self.contents[export.id] = data

    @rule(pick=st.integers(0, 100), pinned=st.booleans())
    def pin(self, pick: int, pinned: bool) -> None:
        self.run(self._pin(pick, pinned))

    async def _pin(self, pick: int, pinned: bool) -> None:
        live = [e for e in await self._exports() if e.gc_state != "deleted"]
        if not live:
            return
        target = live[pick % len(live)]
        try:
            await exports.set_pinned(
                db=self.db,
                store=self.store,
                actor=self.actor,
                project_id=self.project_id,
                version=target.version,
                pinned=pinned,
            )
        except NotFoundError:
            # Only a GC stage running at this moment may delete it first.
            assert self.mid_stage, target
            return
        if pinned and target.gc_state == "archived":
            self.changes["restore"] += 1

    @rule()
    def upload_spare(self) -> None:
        video, _ = self.run(
            videos.upload_video(
                db=self.db,
                store=self.store,
                queue=self.queue,
                actor=self.actor,
                staged=stage(self.store, self.media["other"]),
            )
        )
        if video.id not in self.spares:
            self.spares.append(video.id)

    @precondition(lambda self: bool(self.spares))
    @rule()
    def delete_spare(self) -> None:
        self.run(self._delete_spare())

    async def _delete_spare(self) -> None:
        if self.spares:
            await videos.delete_video(db=self.db, actor=self.actor, video_id=self.spares.pop())

    # --- a GC stage meets a user: the action lands at one step boundary of the stage -----

    @rule(
        stage=st.sampled_from(["archive", "delete"]),
        at=st.integers(0, 5),
        action=st.sampled_from(["pin", "unpin", "export", "delete-video"]),
        pick=st.integers(0, 100),
    )
    def gc_stage_meets_a_user(self, stage: str, at: int, action: str, pick: int) -> None:
        seen: list[str] = []

        async def user_acts(where: str) -> None:
            seen.append(where)
            if len(seen) - 1 != at:
                return
            if action in ("pin", "unpin"):
                await self._pin(pick, action == "pin")
            elif action == "export":
                await self._export(pick)
            else:
                await self._delete_spare()

        self.mid_stage = True
        try:
            if stage == "archive":
                outcome = self.run(
                    gc.archive(db=self.db, store=self.store, actor=self.actor, checkpoint=user_acts)
                )
            else:
                outcome = self.run(
                    gc.delete(
                        db=self.db,
                        store=self.store,
                        actor=self.actor,
                        days_in_archive=0,
                        confirm=True,
                        blob_grace_s=3600,
                        checkpoint=user_acts,
                    )
                )
        finally:
            self.mid_stage = False
        self.changes[stage] += outcome.archived if stage == "archive" else outcome.deleted

    # --- what admins do ------------------------------------------------------------------

    @rule(days_old=st.sampled_from([0, 30]), keep=st.integers(0, 2))
    def mark(self, days_old: int, keep: int) -> None:
        outcome = self.run(
            gc.mark(db=self.db, actor=self.actor, days_old=days_old, keep_latest=keep)
        )
        self.changes["mark"] += outcome.marked

    @rule()
    def archive(self) -> None:
        before = self._disk()
        outcome = self.run(gc.archive(db=self.db, store=self.store, actor=self.actor))
        self.changes["archive"] += outcome.archived
        # Archiving only renames: the disk gets nothing back.
        assert outcome.bytes_freed == 0 and self._disk() == before

    @rule(days=st.sampled_from([0, 30]))
    def delete(self, days: int) -> None:
        cutoff = utcnow() - timedelta(days=days)
        before = self._disk()
        eligible = {
            e.id
            for e in self.run(self._exports())
            if e.gc_state == "archived" and e.archived_at is not None and e.archived_at < cutoff
        }
        outcome = self.run(
            gc.delete(
                db=self.db,
                store=self.store,
                actor=self.actor,
                days_in_archive=days,
                confirm=True,
                blob_grace_s=3600,
            )
        )
        # Nothing is deleted before its retention.
        assert {e.id for e in outcome.exports} <= eligible
        self.changes["delete"] += outcome.deleted
        # What it says it freed is what the disk got back (shared files count once).
        assert before - self._disk() == outcome.bytes_freed

    def _disk(self) -> int:
        return sum(size for size, _ in gc_policy.storage_usage(self.store).values())

    @rule(pick=st.integers(0, 100))
    def export_sharing_a_file(self, pick: int) -> None:
        """An export whose render reuses another's file through a hard link, as the worker
        does for equal content (a revert, the same edit again)."""
        self.run(self._export_sharing(pick))

    async def _export_sharing(self, pick: int) -> None:
        async with self.db.read() as s:
            project = await s.get(Project, self.project_id)
            donors = (
                await s.exec(
                    select(Export, Render)
                    .join(Render, col(Render.id) == Export.render_id)
                    .where(Render.status == "done", col(Export.gc_state).in_(["none", "marked"]))
                )
            ).all()
            taken = set((await s.exec(select(Export.version))).all())
        assert project is not None
        free = [v for v in range(project.current_version + 1) if v not in taken]
        if not donors or not free:
            return
        donor, donor_render = donors[pick % len(donors)]
        export, _ = await renders.request_export(
            db=self.db,
            queue=self.queue,
            actor=self.actor,
            project_id=self.project_id,
            version=free[pick % len(free)],
            preset=PRESET,
        )
        assert donor_render.output_key is not None
        await finish_export(
            self.db,
            self.queue,
            self.store,
            export,
            link_from=self.store.path(donor_render.output_key),
        )
        assert export.id is not None and donor.id is not None
        self.contents[export.id] = self.contents[donor.id]

    @rule(pick=st.integers(0, 100))
    def restore(self, pick: int) -> None:
        archived = [e for e in self.run(self._exports()) if e.gc_state == "archived"]
        if archived:
            target = archived[pick % len(archived)]
            self.run(
                gc.restore(db=self.db, store=self.store, actor=self.actor, export_id=target.id or 0)
            )
            self.changes["restore"] += 1

    @rule(days=st.sampled_from([1, 31]))
    def time_passes(self, days: int) -> None:
        self.run(self._age(timedelta(days=days)))

    async def _age(self, by: timedelta) -> None:
        """Move every timestamp the GC reads back in time: the same as the clock moving on."""
        async with self.db.write() as s:
            for export in (await s.exec(select(Export))).all():
                for name in ("created_at", "archived_at", "marked_at"):
                    value = getattr(export, name)
                    if value is not None:
                        setattr(export, name, value - by)
                s.add(export)
            for blob in (await s.exec(select(Blob))).all():
                if blob.unreferenced_at is not None:
                    blob.unreferenced_at -= by
                    s.add(blob)

    # --- what must always hold -----------------------------------------------------------

    async def _exports(self) -> list[Export]:
        async with self.db.read() as s:
            return list((await s.exec(select(Export).order_by(col(Export.id)))).all())

    @invariant()
    def the_latest_export_is_the_newest_finished_version(self) -> None:
        async def check() -> None:
            async with self.db.read() as s:
                project = await s.get(Project, self.project_id)
                finished = (
                    await s.exec(
                        select(Export)
                        .join(Render, col(Render.id) == Export.render_id)
                        .where(Render.status == "done")
                        .order_by(col(Export.version).desc())
                    )
                ).first()
            assert project is not None
            assert project.latest_export_id == (finished.id if finished else None)

        self.run(check())

    @invariant()
    def protected_exports_exist_and_verify(self) -> None:
        async def check() -> None:
            async with self.db.read() as s:
                project = await s.get(Project, self.project_id)
                rows = (
                    await s.exec(
                        select(Export, Render).join(Render, col(Render.id) == Export.render_id)
                    )
                ).all()
            assert project is not None
            for export, render in rows:
                if export.pinned or export.id == project.latest_export_id:
                    assert export.gc_state == "none", export
                    assert render.output_key is not None
                    assert (
                        self.store.path(render.output_key).read_bytes()
                        == self.contents[export.id or 0]
                    )

        self.run(check())

    @invariant()
    def ref_counts_equal_live_references(self) -> None:
        async def check() -> None:
            async with self.db.read() as s:
                for blob in (await s.exec(select(Blob))).all():
                    live = (
                        await s.exec(
                            select(func.count()).select_from(Video).where(Video.blob_id == blob.id)
                        )
                    ).one()
                    assert blob.ref_count == live, blob

        self.run(check())

    @invariant()
    def audit_rows_match_the_changes(self) -> None:
        async def check() -> None:
            async with self.db.read() as s:
                rows = (await s.exec(select(GcAudit.action))).all()
            counted = Counter(rows)
            for action in ("mark", "archive", "delete", "restore"):
                assert counted[action] == self.changes[action], (action, counted, self.changes)

        self.run(check())

    @invariant()
    def files_and_rows_agree(self) -> None:
        async def check() -> None:
            expected: set[str] = set()
            async with self.db.read() as s:
                rows = (
                    await s.exec(
                        select(Export, Render).join(Render, col(Render.id) == Export.render_id)
                    )
                ).all()
            for export, render in rows:
                if export.gc_state in ("none", "marked") and render.output_key:
                    expected.add(render.output_key)
                elif export.gc_state == "archived":
                    expected.add(gc.archive_key(export))
            found = {
                str(p.relative_to(self.store.root))
                for area in ("export", "archive")
                for p in (self.store.root / area).rglob("*")
                if p.is_file()
            }
            assert found == expected

        self.run(check())


def test_gc_invariants_hold_under_random_interleavings(
    backend: str,
    request: pytest.FixtureRequest,
    sqlite_template: Path,
    tmp_path: Path,
    media: dict[str, Path],
    redis_url: str,
) -> None:
    GcMachine.postgres_url = (
        request.getfixturevalue("postgres_database") if backend == "postgres" else None
    )
    GcMachine.template = sqlite_template
    GcMachine.workdir = tmp_path
    GcMachine.media = media
    GcMachine.redis_url = redis_url
    run_state_machine_as_test(
        GcMachine,
        settings=settings(
            max_examples=10,  # 20 steps each: within the 30 s a test may take here
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )

"""The edit log: append a batch as one version, revert, and rebuild any version's op list."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import tuple_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.db import Database
from models.states import RenderKind
from models.tables import EditOperation, Project, Render, Version, Video
from resolvers import ids, lifecycle, ops, pagination, projects, renders
from resolvers.errors import InvalidOpsError, NotFoundError, OpError, VersionConflictError
from resolvers.presets import PROXY
from resolvers.projects import clean_name, get_project
from resolvers.queue import JobQueue
from resolvers.users import Actor


async def create_project(
    *, db: Database, queue: JobQueue, actor: Actor, video_id: int, name: str
) -> Project:
    """A new project at version 0 (the source, no ops), with its first proxy queued."""
    cleaned = clean_name(name)
    await queue.admit(user_id=actor.id, kind=RenderKind.PROXY)  # never inside the transaction
    async with db.write() as session:
        video = await session.get(Video, video_id)
        if video is None or video.owner_id != actor.id or video.deleted_at is not None:
            raise NotFoundError("Video", ids.encode("Video", video_id))
        project = Project(owner_id=actor.id, name=cleaned, source_video_id=video_id)
        session.add(project)
        await session.flush()
        assert project.id is not None
        start = ops.Frame(video.width, video.height, video.duration)
        version = new_version(project.id, 0, None, actor, start, ops.ROOT_HASH, 0)
        session.add(version)
        proxy = await renders.add_render(session, project, version, RenderKind.PROXY, PROXY)
    await lifecycle.enqueue(queue, proxy)
    return project


async def append_ops(
    *,
    db: Database,
    queue: JobQueue,
    actor: Actor,
    project_id: int,
    raw_ops: list[dict[str, Any]],
    expected_version: int | None,
    limits: ops.Limits = ops.DEFAULT_LIMITS,
) -> tuple[Project, Version, Render]:
    """Append a batch of ops as one new version and queue its proxy; all of it, or none."""
    # Counted before anything is parsed: ops sent as variables escape the query size limits.
    errors = ops.check_counts(batch=len(raw_ops), existing=0, limits=limits)
    parsed: list[ops.Op | None] = []
    if not errors:
        parsed, errors = ops.parse(raw_ops)
    if errors:
        raise InvalidOpsError(await _every_problem(db, actor, project_id, parsed, errors, limits))
    batch = [op for op in parsed if op is not None]  # all of them: none failed to parse
    await queue.admit(user_id=actor.id, kind=RenderKind.PROXY)  # never inside the transaction
    # Read before the project's row is locked: the less a bump holds it, the more appends
    # to one project commit per second.
    source = await renders.project_source(db=db, project_id=project_id)
    async with db.write() as session:
        project, number = await _bump(session, actor, project_id, expected_version)
        parent = number - 1
        # The bump holds the project's row lock (PostgreSQL) or the write lock (SQLite),
        # so the state validated here is the state the new version builds on.
        # Each version records the frame it renders, so validation costs the same at
        # version 5 as at version 5000.
        base = await _version(session, project_id, parent)
        concat_ids = {o.video_id for o in batch if isinstance(o, ops.Concat)}
        durations = await _concat_durations(session, actor, concat_ids)
        assert base is not None
        problems = ops.check_counts(batch=len(batch), existing=base.op_count, limits=limits)
        frame, misfits = ops.check(batch, _frame(base), durations, limits)
        problems += misfits
        if problems:
            raise InvalidOpsError(problems)
        stored = [ops.stored(op) for op in batch]
        version = new_version(
            project_id,
            number,
            parent,
            actor,
            frame,
            ops.chain_hash(base.ops_hash, stored),
            base.op_count + len(batch),
        )
        session.add(version)
        for seq, (op, row) in enumerate(zip(batch, stored, strict=True)):
            session.add(
                EditOperation(
                    project_id=project_id,
                    version=number,
                    seq=seq,
                    type=row["type"],
                    params=row["params"],
                    video_id=op.video_id if isinstance(op, ops.Concat) else None,
                )
            )
        proxy = await renders.add_render(
            session, project, version, RenderKind.PROXY, PROXY, source=source
        )
    await lifecycle.enqueue(queue, proxy)
    return project, version, proxy


async def revert_to_version(
    *,
    db: Database,
    queue: JobQueue,
    actor: Actor,
    project_id: int,
    version: int,
    expected_version: int | None,
) -> tuple[Project, Version, Render]:
    """Undo without losing history: a new version whose parent is the older one."""
    await queue.admit(user_id=actor.id, kind=RenderKind.PROXY)  # never inside the transaction
    async with db.write() as session:
        project, number = await _bump(session, actor, project_id, expected_version)
        target = await _version(session, project_id, version)
        if target is None or version >= number:
            raise NotFoundError(f"Version {version} of project", ids.encode("Project", project_id))
        new = new_version(
            project_id, number, version, actor, _frame(target), target.ops_hash, target.op_count
        )
        session.add(new)
        # Same ops hash as the target, so the worker reuses the target's finished proxy.
        proxy = await renders.add_render(session, project, new, RenderKind.PROXY, PROXY)
    await lifecycle.enqueue(queue, proxy)
    return project, new, proxy


async def effective_ops(
    *, db: Database, actor: Actor, project_id: int, up_to: int | None
) -> list[EditOperation]:
    """The op list that version ``up_to`` (default: current) renders."""
    project = await get_project(db=db, actor=actor, project_id=project_id)
    number = project.current_version if up_to is None else up_to
    if not 0 <= number <= project.current_version:
        raise NotFoundError(f"Version {number} of project", ids.encode("Project", project_id))
    async with db.read() as session:
        return await effective_in(session, project_id, number)


async def get_version(*, db: Database, project_id: int, number: int) -> Version | None:
    """Version ``number`` of a project the caller already owns."""
    async with db.read() as session:
        return await _version(session, project_id, number)


async def list_versions(
    *, db: Database, project_id: int, first: int, after: str | None
) -> pagination.Page[Version]:
    """Versions of a project the caller already owns, newest first."""
    query = select(Version).where(Version.project_id == project_id)
    return await pagination.newest_first(
        db, query, col(Version.number), lambda v: v.number, first=first, after=after
    )


async def own_ops(*, db: Database, keys: Sequence[tuple[int, int]]) -> list[list[EditOperation]]:
    """Batch lookup for loaders: the ops added in each (project id, version number)."""
    async with db.read() as session:
        rows = (
            await session.exec(
                select(EditOperation)
                .where(tuple_(EditOperation.project_id, EditOperation.version).in_(list(keys)))
                .order_by(col(EditOperation.seq))
            )
        ).all()
    grouped: dict[tuple[int, int], list[EditOperation]] = {k: [] for k in keys}
    for row in rows:
        grouped[(row.project_id, row.version)].append(row)
    return [grouped[k] for k in keys]


async def _version(session: AsyncSession, project_id: int, number: int) -> Version | None:
    return (
        await session.exec(
            select(Version).where(Version.project_id == project_id, Version.number == number)
        )
    ).first()


def _frame(version: Version | None) -> ops.Frame:
    assert version is not None, "the version before the bump always exists"
    return ops.Frame(version.frame_width, version.frame_height, version.frame_duration)


def new_version(
    project_id: int,
    number: int,
    parent: int | None,
    actor: Actor,
    frame: ops.Frame,
    ops_hash: str,
    op_count: int,
) -> Version:
    """A version row: its place in the history, the frame it renders, its ops hash and how
    many ops it renders."""
    return Version(
        project_id=project_id,
        number=number,
        parent=parent,
        actor_id=actor.id,
        frame_width=frame.width,
        frame_height=frame.height,
        frame_duration=frame.duration,
        ops_hash=ops_hash,
        op_count=op_count,
    )


async def _bump(
    session: AsyncSession, actor: Actor, project_id: int, expected: int | None
) -> tuple[Project, int]:
    """Claim the next version number with one UPDATE … RETURNING; never max()+1."""
    stmt = update(Project).where(
        col(Project.id) == project_id,
        col(Project.owner_id) == actor.id,
        col(Project.deleted_at).is_(None),
    )
    if expected is not None:
        stmt = stmt.where(col(Project.current_version) == expected)
    # The project comes back with its new number: one statement while the row is locked.
    stmt = stmt.values(current_version=col(Project.current_version) + 1).returning(Project)
    bumped = (await session.exec(stmt)).scalar_one_or_none()
    if bumped is not None:
        return bumped, bumped.current_version
    project = await session.get(Project, project_id)
    if project is None or not projects.owned(project, actor):
        raise NotFoundError("Project", ids.encode("Project", project_id))
    assert expected is not None
    raise VersionConflictError(expected, project.current_version)


async def effective_in(session: AsyncSession, project_id: int, number: int) -> list[EditOperation]:
    """The effective ops of a version, inside an open session (no ownership check)."""
    parents = dict(
        (
            await session.exec(
                select(Version.number, Version.parent).where(Version.project_id == project_id)
            )
        ).all()
    )
    chain: list[int] = []
    cursor: int | None = number
    while cursor is not None:
        chain.append(cursor)
        cursor = parents.get(cursor)
    position = {n: i for i, n in enumerate(reversed(chain))}
    rows: list[EditOperation] = []
    # Reverts can make a chain of any length; a bounded IN list stays under driver limits.
    for at in range(0, len(chain), 1000):
        rows += (
            await session.exec(
                select(EditOperation).where(
                    EditOperation.project_id == project_id,
                    col(EditOperation.version).in_(chain[at : at + 1000]),
                )
            )
        ).all()
    return sorted(rows, key=lambda r: (position[r.version], r.seq))


async def _every_problem(
    db: Database,
    actor: Actor,
    project_id: int,
    parsed: list[ops.Op | None],
    errors: list[OpError],
    limits: ops.Limits,
) -> list[OpError]:
    """A batch's parse errors and the frame checks of the ops that did parse, in op order:
    one answer lists every problem. NotFound comes first."""
    project = await get_project(db=db, actor=actor, project_id=project_id)
    if not any(op is not None for op in parsed):
        return errors
    async with db.read() as session:
        base = await _version(session, project_id, project.current_version)
        concat_ids = {o.video_id for o in parsed if isinstance(o, ops.Concat)}
        durations = await _concat_durations(session, actor, concat_ids)
    _, misfits = ops.check(parsed, _frame(base), durations, limits)
    return sorted(errors + misfits, key=lambda e: e.index)


async def _concat_durations(
    session: AsyncSession, actor: Actor, video_ids: set[int]
) -> dict[int, float]:
    """Durations of the concat targets the actor owns, by video id."""
    if not video_ids:
        return {}
    rows = (
        await session.exec(
            select(Video).where(
                col(Video.id).in_(list(video_ids)),
                Video.owner_id == actor.id,
                col(Video.deleted_at).is_(None),
            )
        )
    ).all()
    return {v.id: v.duration for v in rows if v.id is not None}

"""What changed between two versions of a project: their nearest common ancestor (following
revert parents), the ops each side has beyond it with their places in that side's op list,
and a plain-language line per op ("blur radius 5 added", "trim 0-10 s removed", with an en dash)."""

from dataclasses import dataclass
from typing import Any

from sqlmodel import select

from models.db import Database
from models.tables import EditOperation, Version
from resolvers import ids, ops
from resolvers.errors import NotFoundError
from resolvers.projects import get_project
from resolvers.users import Actor
from resolvers.versions import effective_in

DASH = "\u2013"  # an en dash: "trim 0 to 10 s" reads as a range with it
# How a line names an op type, where its own name is not the plain word.
_NAMES = {"gaussian-blur": "blur", "concat": "appended video"}


@dataclass(frozen=True)
class Change:
    """One op one side has beyond the common ancestor: its place in that side's effective
    op list, the version that added it, and what it is."""

    index: int
    version: int
    type: str
    params: dict[str, Any]
    summary: str


@dataclass(frozen=True)
class Diff:
    """``removed``: ops of ``from_version`` the other side lacks; ``added``: the other's."""

    from_version: int
    to_version: int
    common_ancestor: int
    removed: list[Change]
    added: list[Change]
    summary: list[str]


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def describe(op_type: str, params: dict[str, Any]) -> str:
    """An op in a few words: "blur radius 5 at 0-60 s", "trim 0-10 s", "grayscale"."""
    shown = ops.shown(op_type, params)
    name = _NAMES.get(op_type, op_type)
    if op_type == "trim":
        return f"trim {_number(shown.get('start'))}{DASH}{_number(shown.get('end'))} s"
    if op_type == "concat":
        return f"{name} {shown.get('videoId')}"
    start, end = shown.get("start"), shown.get("end")
    rest = []
    for key, value in shown.items():
        if key in ("start", "end") or value is None:
            continue
        shown_value = repr(value) if isinstance(value, str) else _number(value)
        # "brightness 20", not "brightness brightness 20"
        rest.append(shown_value if key == op_type else f"{key} {shown_value}")
    words = " ".join([name, *rest])
    if end is not None:
        words += f" at {_number(start or 0)}{DASH}{_number(end)} s"
    elif start:
        words += f" from {_number(start)} s"
    return words


def _chain(parents: dict[int, int | None], number: int) -> list[int]:
    """A version and its ancestors, nearest first."""
    chain: list[int] = []
    cursor: int | None = number
    while cursor is not None and cursor not in chain:
        chain.append(cursor)
        cursor = parents.get(cursor)
    return chain


def _span(versions: list[int]) -> str:
    first, last = min(versions), max(versions)
    return f"v{first}" if first == last else f"v{first}{DASH}v{last}"


async def diff(
    *, db: Database, actor: Actor, project_id: int, from_version: int, to_version: int
) -> Diff:
    """The diff of two versions of one of the actor's projects."""
    await get_project(db=db, actor=actor, project_id=project_id)
    async with db.read() as session:
        parents: dict[int, int | None] = dict(
            (
                await session.exec(
                    select(Version.number, Version.parent).where(Version.project_id == project_id)
                )
            ).all()
        )
        for number in (from_version, to_version):
            if number not in parents:
                public = ids.encode("Project", project_id)
                raise NotFoundError(f"Version {number} of project", public)
        before, after = _chain(parents, from_version), _chain(parents, to_version)
        common = next(n for n in before if n in set(after))
        old_side = before[: before.index(common)]
        new_side = after[: after.index(common)]
        removed = _changes(await effective_in(session, project_id, from_version), old_side)
        added = _changes(await effective_in(session, project_id, to_version), new_side)
    summary: list[str] = []
    with_ops = sorted({c.version for c in removed})
    if with_ops:
        summary.append(f"removed: the ops of {_span(old_side)}")
    if added:
        summary.append(f"added: the ops of {_span(new_side)}")
    summary += [f"{c.summary} removed" for c in removed]
    summary += [f"{c.summary} added" for c in added]
    return Diff(from_version, to_version, common, removed, added, summary)


def _changes(effective: list[EditOperation], side: list[int]) -> list[Change]:
    """The ops of ``effective`` that versions on ``side`` added, with their indexes."""
    mine = set(side)
    return [
        Change(
            index,
            row.version,
            row.type,
            ops.shown(row.type, row.params),
            describe(row.type, row.params),
        )
        for index, row in enumerate(effective)
        if row.version in mine
    ]

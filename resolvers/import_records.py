"""The records ``editgraph import`` works from, whatever the source: users, videos,
projects with their versions' ops and their exports; and what a run reports back."""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from resolvers import ops
from resolvers.presets import Preset

# What an import makes, in the order it makes them.
KINDS = ("user", "video", "project", "version", "op", "export")
MAX_VERSIONS = 100_000  # a project claiming more is a broken record, not a history


@dataclass
class UserIn:
    """An account the source names: created (``vfxb-…``, no token) or mapped to one that
    must exist (``--user-map``, ``--owner``)."""

    key: str
    name: str
    create: bool


@dataclass
class VideoIn:
    source_id: str
    owner: str  # a UserIn.key
    path: Path | None  # None: the record names no file, or a missing one
    filename: str
    claimed_sha256: str | None = None


@dataclass
class ExportIn:
    source_id: str
    version: int
    path: Path | None
    archived: bool = False  # under archive/: stays archived unless pinned
    created_at: datetime | None = None
    pinned: bool = False  # pinned in the source (every export is, unless --no-pin)


@dataclass
class ProjectIn:
    source_id: str
    owner: str
    name: str
    video: str  # a VideoIn.source_id
    ops: dict[int, list[dict[str, Any]]]  # version → its ops, in order (versions 1…current)
    current_version: int
    exports: list[ExportIn] = field(default_factory=list)
    created_at: datetime | None = None
    problems: list[str] = field(default_factory=list)  # found reading it: it stays out


@dataclass
class Source:
    """What one import reads: ``kind`` names the source for idempotency ("vfxb", or
    "folder:" and the folder), ``label`` is what the run records."""

    kind: str
    label: str
    users: list[UserIn] = field(default_factory=list)
    videos: list[VideoIn] = field(default_factory=list)
    projects: list[ProjectIn] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class Report:
    """What a run made (or, dry, would make), per kind; what was there from an earlier run;
    every problem found, in plain words."""

    run_id: int | None
    dry_run: bool
    created: Counter[str] = field(default_factory=Counter)
    created_bytes: Counter[str] = field(default_factory=Counter)
    already: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def problem(self, kind: str, text: str) -> None:
        """A problem that keeps one ``kind`` of thing out."""
        self.skipped[kind] += 1
        self.problems.append(text)


@dataclass
class Options:
    pin: bool = True
    render_proxies: bool = False
    dry_run: bool = False
    operator: str = "cli"
    export_preset: Preset | None = None  # the preset imported exports are recorded with
    limits: ops.Limits = ops.DEFAULT_LIMITS
    # Hard-link files into a local store (same filesystem): no copy, but the store then
    # shares them with the source, which must not be edited in place afterwards.
    link: bool = True

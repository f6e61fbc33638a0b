"""What ``editgraph import`` reads: a folder of videos (and finished exports), or the JSON
files and media of a VFXB backend. Each becomes a ``Source`` for ``resolvers.imports``;
reading never changes the source, and a record that cannot be read is a problem, not a
crash."""

import fnmatch
import glob
import hashlib
import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from resolvers.import_records import MAX_VERSIONS, ExportIn, ProjectIn, Source, UserIn, VideoIn

OWNER = "owner"  # the one user of a folder import
# A VFXB export record's status, when it has one, that means the file is finished.
FINISHED = {"completed", "complete", "done", "ready", "finished", "success"}
DEFAULT_EXPORT_PATTERN = "{stem}.final.*"


def folder(
    root: Path,
    *,
    owner: str,
    projects: bool = False,
    exports_from: Path | None = None,
    export_pattern: str = DEFAULT_EXPORT_PATTERN,
) -> Source:
    """Every file under ``root`` (recursively) as a video of ``owner``; with ``projects``
    one project per video, named after the file, and its finished export (a file under
    ``exports_from`` whose name matches ``export_pattern`` for it) as version 0's."""
    root = root.resolve()
    # The folder's path can be long: its hash names the source (the run records the path).
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:40]
    source = Source(kind=f"folder:{digest}", label=str(root))
    source.users.append(UserIn(key=OWNER, name=owner, create=False))
    entries = sorted(p for p in root.rglob("*") if not p.name.startswith("."))
    files = [p for p in entries if p.is_file()]
    for path in entries:
        if not path.is_file() and not path.is_dir():  # a FIFO, a device, a broken link
            relative = path.relative_to(root).as_posix()
            source.problems.append(f"{relative}: not a regular file; skipped")
    exports: dict[str, list[Path]] = defaultdict(list)
    if exports_from is not None:
        exports_from = exports_from.resolve()
        source.label += f" (exports from {exports_from})"
        for path in sorted(p for p in exports_from.rglob("*") if p.is_file()):
            exports[path.name].append(path)
        # The exports folder may sit inside the sources: its files are not sources.
        files = [p for p in files if not p.is_relative_to(exports_from)]
    for path in files:
        relative = path.relative_to(root).as_posix()
        source.videos.append(VideoIn(relative, OWNER, path, path.name))
        if not projects:
            continue
        found: list[ExportIn] = []
        wanted = export_pattern.format(
            stem=glob.escape(path.stem), ext=glob.escape(path.suffix), name=glob.escape(path.name)
        )
        matches = [p for name, ps in exports.items() if fnmatch.fnmatch(name, wanted) for p in ps]
        if len(matches) > 1:
            names = ", ".join(sorted(p.name for p in matches))
            source.problems.append(f"{relative}: several exports match it ({names}); none taken")
        elif matches:
            found.append(ExportIn(f"{relative}#export", 0, matches[0]))
        source.projects.append(ProjectIn(relative, OWNER, path.stem, relative, {}, 0, found))
    return source


def _records(path: Path, source: Source) -> list[dict[str, Any]]:
    """A VFXB file's records: an array of them, or an object keyed by id."""
    if not path.is_file():
        source.problems.append(f"{path.name}: not found; read as empty")
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        source.problems.append(f"{path.name}: not readable JSON ({exc}); read as empty")
        return []
    if isinstance(data, dict):
        rows = [{"id": key, **value} for key, value in data.items() if isinstance(value, dict)]
    elif isinstance(data, list):
        rows = [row for row in data if isinstance(row, dict)]
    else:
        rows = []
    if len(rows) != (len(data) if isinstance(data, list | dict) else 1):
        source.problems.append(f"{path.name}: entries that are not records were skipped")
    return rows


def _text(row: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = row.get(name)
        if value is not None and value != "":
            return str(value)
    return None


def _number(value: object) -> int | None:
    """A whole number as a record holds it (``3`` or ``"3"``), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 12:
        return int(value.strip())
    return None


def _time(value: object) -> datetime | None:
    """An ISO 8601 time or epoch milliseconds (as the VFXB backend wrote them)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _inside(base: Path, relative: str | None) -> Path | None:
    """A record's file under ``base``; None for none, or for a path that leaves ``base``."""
    if not relative:
        return None
    path = (base / relative.lstrip("/")).resolve()
    return path if path.is_relative_to(base) else None


def _renamed(op: dict[str, Any], ops_map: dict[str, Any]) -> dict[str, Any]:
    """An op with its type (and param names) renamed by ``--ops-map``: ``{"old": "new"}`` or
    ``{"old": {"type": "new", "params": {"oldName": "newName"}}}``."""
    rule = ops_map.get(str(op.get("type")))
    if rule is None:
        return op
    if isinstance(rule, str):
        return {**op, "type": rule}
    params = op.get("params") if isinstance(op.get("params"), dict) else {}
    names = rule.get("params", {}) if isinstance(rule, dict) else {}
    renamed = {names.get(k, k): v for k, v in (params or {}).items()}
    return {"type": rule.get("type", op.get("type")), "params": renamed}


def vfxb(
    data_dir: Path,
    uploads_dir: Path,
    *,
    user_map: dict[str, str] | None = None,
    ops_map: dict[str, Any] | None = None,
) -> Source:
    """The VFXB backend's records (videos, projects, editOperations, exportVersions .json
    under ``data_dir``) and media (under ``uploads_dir``, in the layout editgraph uses)."""
    data_dir, uploads_dir = data_dir.resolve(), uploads_dir.resolve()
    source = Source(kind="vfxb", label=f"{data_dir} {uploads_dir}")
    videos = _records(data_dir / "videos.json", source)
    projects = _records(data_dir / "projects.json", source)
    operations = _records(data_dir / "editOperations.json", source)
    exports = _records(data_dir / "exportVersions.json", source)
    users: list[str] = []
    for row in videos + projects:
        user = _text(row, "userId")
        if user is not None and user not in users:
            users.append(user)
    for user in users:
        if user_map is not None and user in user_map:
            source.users.append(UserIn(user, user_map[user], create=False))
        else:
            source.users.append(UserIn(user, f"vfxb-{user}", create=True))
    for row in videos:
        vid, owner = _text(row, "id"), _text(row, "userId")
        if vid is None or owner is None:
            source.problems.append(f"videos.json: a record without id or userId: {row!r:.120}")
            continue
        where = _text(row, "path")
        name = _text(row, "filename", "originalName") or Path(where or vid).name
        path = _inside(uploads_dir, where)
        source.videos.append(VideoIn(vid, owner, path, name, _text(row, "sha256")))
    ops_of: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    broken: dict[str, list[str]] = defaultdict(list)  # a project with an unreadable op: out
    for row in operations:  # the file's order is the order of a version's ops
        project_id, version = _text(row, "projectId"), _number(row.get("version"))
        if project_id is None:
            source.problems.append(f"editOperations.json: an op without its project: {row!r:.80}")
            continue
        if version is None or version < 1:
            what = f"op {_text(row, 'id') or '?'} has version {row.get('version')!r}"
            broken[project_id].append(what)
            continue
        op = {"type": row.get("type"), "params": row.get("params") or {}}
        ops_of[project_id][version].append(_renamed(op, ops_map or {}))
    exports_of: dict[str, list[ExportIn]] = defaultdict(list)
    for row in exports:
        eid, project_id = _text(row, "id", "exportId"), _text(row, "projectId")
        version = _number(row.get("version"))
        if eid is None or project_id is None or version is None:
            source.problems.append(
                f"exportVersions.json: a record without id, project or version: {row!r:.120}"
            )
            continue
        status = _text(row, "status")
        if status is not None and status.lower() not in FINISHED:
            source.problems.append(f"export {eid}: status {status!r}, not a finished file; skipped")
            continue
        where = _text(row, "key", "path")
        exports_of[project_id].append(
            ExportIn(
                eid,
                version,
                _inside(uploads_dir, where),
                archived=(where or "").lstrip("/").startswith("archive/"),
                created_at=_time(row.get("createdAt")),
                pinned=bool(row.get("pinned")),
            )
        )
    for row in projects:
        pid, owner, video = _text(row, "id"), _text(row, "userId"), _text(row, "videoId")
        if pid is None or owner is None or video is None:
            source.problems.append(
                f"projects.json: a record without id, userId or videoId: {row!r:.120}"
            )
            continue
        versions = ops_of.get(pid, {})
        current = max([_number(row.get("currentVersion")) or 0, *versions])
        problems = list(broken.get(pid, []))
        if current > MAX_VERSIONS:
            problems.append(f"it claims {current} versions (at most {MAX_VERSIONS})")
            current = 0
        source.projects.append(
            ProjectIn(
                pid,
                owner,
                _text(row, "name", "title") or pid,
                video,
                dict(versions),
                current,
                exports_of.get(pid, []),
                _time(row.get("createdAt")),
                problems,
            )
        )
    return source

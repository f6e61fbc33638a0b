"""`editgraph import …`: bring a folder of videos, or a VFXB backend's data, into editgraph;
`--dry-run` first, then for real; `editgraph import undo RUN` takes a run back."""

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from editgraph.settings import Settings
from models.db import Database
from models.migrate import upgrade
from resolvers import import_sources, import_undo, imports, users
from resolvers.import_records import KINDS, Options, Report, Source


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def summary(report: Report) -> str:
    """The table an operator reads at the end: per kind, made (or to be made), bytes, there
    from an earlier run, left out; then every problem."""
    made = "would create" if report.dry_run else "created"
    lines = [f"{'kind':<8} {made:>12} {'bytes':>10} {'already there':>14} {'left out':>9}"]
    for kind in KINDS:
        size = report.created_bytes.get(kind, 0)
        lines.append(
            f"{kind:<8} {report.created.get(kind, 0):>12} {_size(size) if size else '-':>10} "
            f"{report.already.get(kind, 0):>14} {report.skipped.get(kind, 0):>9}"
        )
    if report.problems:
        lines.append(f"\n{len(report.problems)} problem(s):")
        lines += [f"  - {p}" for p in report.problems]
    else:
        lines.append("\nno problems found")
    if report.dry_run:
        lines.append("dry run: nothing was written")
    elif report.run_id is not None:
        lines.append(
            f"import run {report.run_id}: undo it with `editgraph import undo {report.run_id}`"
        )
    return "\n".join(lines)


def _json_file(path: Path | None, what: str) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"editgraph import: {what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"editgraph import: {what} {path} must hold a JSON object")
    return data


def _operator(given: str | None) -> str:
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _source(args: argparse.Namespace) -> Source:
    if args.import_command == "folder":
        if not args.folder.is_dir():
            raise SystemExit(f"editgraph import: {args.folder} is not a folder")
        if args.exports_from is not None and not args.projects:
            raise SystemExit(
                "editgraph import: --exports-from needs --projects (exports belong to projects)"
            )
        return import_sources.folder(
            args.folder,
            owner=args.owner,
            projects=args.projects,
            exports_from=args.exports_from,
            export_pattern=args.export_pattern,
        )
    for folder in (args.data_dir, args.uploads_dir):
        if not folder.is_dir():
            raise SystemExit(f"editgraph import: {folder} is not a folder")
    user_map = _json_file(args.user_map, "--user-map")
    return import_sources.vfxb(
        args.data_dir,
        args.uploads_dir,
        user_map={str(k): str(v) for k, v in user_map.items()} if user_map else None,
        ops_map=_json_file(args.ops_map, "--ops-map"),
    )


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings.database_url)
    try:
        await upgrade(db)
        if args.import_command == "undo":
            store = settings.store()
            undone = await import_undo.undo(db=db, store=store, run_id=args.run_id)
            if undone.blocked:
                print(
                    f"import run {args.run_id} was not undone; nothing was removed:",
                    file=sys.stderr,
                )
                for reason in undone.blocked:
                    print(f"  - {reason}", file=sys.stderr)
                return 1
            removed = ", ".join(
                f"{undone.removed[kind]} {kind}(s)" for kind in KINDS if undone.removed[kind]
            )
            print(f"import run {args.run_id} undone: removed {removed or 'nothing'}")
            return 0
        source = _source(args)
        if (
            args.import_command == "folder"
            and await users.user_by_name(db=db, name=args.owner) is None
        ):
            print(
                f"editgraph import: no user named {args.owner!r}; create it first "
                f"(editgraph user create {args.owner})",
                file=sys.stderr,
            )
            return 2
        store = settings.store()
        if not args.dry_run:
            store.ensure_layout()
        options = Options(
            pin=not args.no_pin,
            render_proxies=args.render_proxies,
            dry_run=args.dry_run,
            operator=_operator(args.actor),
            export_preset=settings.export,
            limits=settings.op_limits(),
            link=not args.copy,
        )

        def progress(line: str) -> None:
            print(f"  … {line}", file=sys.stderr, flush=True)

        try:
            report = await imports.run(
                db=db, store=store, queue=None, source=source, options=options, progress=progress
            )
        except imports.ImportBusyError as exc:
            print(f"editgraph import: {exc}", file=sys.stderr)
            return 3
        print(summary(report))
        return 0
    finally:
        await db.dispose()


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    """Entry point of `editgraph import`."""
    return asyncio.run(_run(settings, args))


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `editgraph import` and its sources."""
    parser = sub.add_parser("import", help="bring existing videos and projects in")
    verbs = parser.add_subparsers(dest="import_command", required=True)
    folder = verbs.add_parser(
        "folder", help="every video under a folder, for one user (and finished exports)"
    )
    folder.add_argument("folder", type=Path)
    folder.add_argument("--owner", required=True, help="the (existing) user the videos belong to")
    folder.add_argument("--projects", action="store_true", help="also one project per video")
    folder.add_argument(
        "--exports-from", type=Path, default=None, help="finished exports, matched by name"
    )
    folder.add_argument(
        "--export-pattern",
        default=import_sources.DEFAULT_EXPORT_PATTERN,
        help="an export's file name for a source ({stem}, {ext}, {name}; default: %(default)s)",
    )
    vfxb = verbs.add_parser("vfxb", help="a VFXB backend's JSON files and media")
    vfxb.add_argument("data_dir", type=Path, help="where videos.json, projects.json, … are")
    vfxb.add_argument("uploads_dir", type=Path, help="its media: videos/, export/, archive/")
    vfxb.add_argument("--user-map", type=Path, help='JSON {"vfxbUserId": "editgraph name"}')
    vfxb.add_argument("--ops-map", type=Path, help='JSON {"oldType": "new-type"} or with params')
    for verb in (folder, vfxb):
        verb.add_argument("--dry-run", action="store_true", help="write nothing; say what would be")
        verb.add_argument("--no-pin", action="store_true", help="pin only what the source pinned")
        verb.add_argument(
            "--render-proxies",
            action="store_true",
            help="queue a proxy of each project's current version (off: one renders on the "
            "next edit, or on requestProxy)",
        )
        verb.add_argument("--actor", default=None, help="who runs it (default: your OS user)")
        verb.add_argument(
            "--copy",
            action="store_true",
            help="copy files into a local media root instead of hard-linking them (links "
            "share the files with the source: do not edit those in place afterwards)",
        )
        verb.set_defaults(handler=cmd_import)
    undo = verbs.add_parser("undo", help="remove what one import run created")
    undo.add_argument("run_id", type=int)
    undo.set_defaults(handler=cmd_import)

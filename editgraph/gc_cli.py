"""`editgraph gc …`: the same GC, with the same rules, from a terminal."""

import argparse
import asyncio
import getpass
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta

from editgraph.settings import Settings
from models.db import Database
from models.store import MediaStore
from models.tables import Export, GcRun
from resolvers import gc, gc_policy, gc_runs, ids, users
from resolvers.errors import GcBusyError, MediaMissingError, NotFoundError
from resolvers.gc_runs import Reporter
from resolvers.users import Actor


def _count(text: str) -> int:
    """A command-line count: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give 0 or more")
    return value


def _export_id(text: str) -> int:
    """An export's id as the API and this command's tables show it (``RXhwb3J0OjE…``)."""
    decoded = ids.decode_any(text.strip())
    if decoded is None or decoded[0] != "Export":
        raise argparse.ArgumentTypeError(f"{text!r} is not an export id the API shows")
    return decoded[1]


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return f"uid {os.getuid()}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]  # becomes a float for display only
    return str(n)


def table(rows: Iterable[tuple[Export, int]]) -> str:
    """A readable table of exports and their sizes."""
    header = ("export", "project", "version", "state", "pinned", "size", "created")
    lines = ["{:>14}  {:>14}  {:>7}  {:<9}  {:<6}  {:>10}  {}".format(*header)]
    total = count = 0
    for export, size in rows:
        assert export.id is not None
        lines.append(
            f"{ids.encode('Export', export.id):>14}  "
            f"{ids.encode('Project', export.project_id):>14}  {export.version:>7}  "
            f"{export.gc_state:<9}  {'yes' if export.pinned else 'no':<6}  "
            f"{_size(size):>10}  {export.created_at:%Y-%m-%d %H:%M}"
        )
        total, count = total + size, count + 1
    lines.append(f"{count} export(s), {_size(total)}")
    return "\n".join(lines)


def _progress(tally: gc_runs.Tally) -> None:
    if tally.total >= 20:
        print(f"  … {tally.done}/{tally.total}", file=sys.stderr, flush=True)


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings.database_url)
    store = settings.store()
    if getattr(args, "segment_days_old", 0) is None:
        args.segment_days_old = settings.gc_segment_days
    # The run says who ran it; the audit names an account only when --actor named one (an
    # OS user name that happens to match someone's account is not that someone).
    found = await users.user_by_name(db=db, name=args.actor) if args.actor else None
    args.actor_user = Actor.of(found) if found is not None else None
    args.actor = args.actor or _os_user()
    try:
        return await _dispatch(db, store, args)
    except GcBusyError as exc:
        print(f"editgraph gc: {exc.message}", file=sys.stderr)
        return 3
    except MediaMissingError as exc:
        print(f"editgraph gc: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await db.dispose()


async def _locked(
    db: Database,
    args: argparse.Namespace,
    action: str,
    params: dict[str, int],
    stage: Callable[[Reporter], Awaitable[object]],
) -> GcRun:
    """Run one stage under the cluster-wide GC lock, recorded like any other run, with the
    operator (``--actor``) as who started it."""
    run = await gc_runs.acquire(
        db=db,
        action=action,
        actor=args.actor_user,
        holder=f"cli ({args.actor}) on {socket.gethostname()}",
        params=params,
    )

    async def work(reporter: Reporter) -> None:
        await stage(reporter)

    return await gc_runs.execute(db, run, work, echo=_progress)


async def _dispatch(db: Database, store: MediaStore, args: argparse.Namespace) -> int:
    verb = args.gc_command
    if verb == "candidates" or (verb == "mark" and args.dry_run):
        rows, count, size = await gc_policy.candidates(
            db=db, days_old=args.days_old, keep_latest=args.keep_latest, first=10_000
        )
        print(table(rows) if rows else "nothing to mark")
        print(f"would mark {count} export(s), {_size(size)}")
        return 0
    if verb == "mark":
        run = await _locked(
            db,
            args,
            "mark",
            {"daysOld": args.days_old, "keepLatest": args.keep_latest},
            lambda r: gc.mark(
                db=db,
                actor=args.actor_user,
                days_old=args.days_old,
                keep_latest=args.keep_latest,
                reporter=r,
            ),
        )
        print(f"marked {run.marked} export(s), {_size(run.bytes_marked)}; nothing was moved")
        return 0
    if verb == "archive":
        if args.dry_run:
            print(table(await gc_policy.in_state(db=db, state=gc.MARKED)))
            print("would archive these, unless pinned or latest by then")
            return 0
        run = await _locked(
            db,
            args,
            "archive",
            {},
            lambda r: gc.archive(db=db, store=store, actor=args.actor_user, reporter=r),
        )
        print(f"archived {run.archived} export(s), {_size(run.bytes_moved)} moved")
        return 0
    if verb in ("delete", "full-cycle"):
        due = timedelta(days=args.days_in_archive)
        if args.dry_run:
            print(table(await gc_policy.in_state(db=db, state=gc.ARCHIVED, older_than=due)))
            print("would delete these permanently")
            return 0
        if not args.yes:
            print("permanent deletion needs --yes (try --dry-run first)", file=sys.stderr)
            return 2
        if verb == "delete":
            segment_days = args.segment_days_old
            run = await _locked(
                db,
                args,
                "delete",
                {
                    "daysInArchive": args.days_in_archive,
                    "proxyDaysOld": args.proxy_days_old,
                    "segmentDaysOld": segment_days,
                },
                lambda r: gc.delete(
                    db=db,
                    store=store,
                    actor=args.actor_user,
                    days_in_archive=args.days_in_archive,
                    proxy_days_old=args.proxy_days_old,
                    segment_days_old=segment_days,
                    confirm=True,
                    reporter=r,
                ),
            )
        else:
            run = await _locked(
                db,
                args,
                "full-cycle",
                {
                    "daysOld": args.days_old,
                    "keepLatest": args.keep_latest,
                    "daysInArchive": args.days_in_archive,
                },
                lambda r: gc.full_cycle(
                    db=db,
                    store=store,
                    actor=args.actor_user,
                    days_old=args.days_old,
                    keep_latest=args.keep_latest,
                    days_in_archive=args.days_in_archive,
                    confirm=True,
                    reporter=r,
                ),
            )
            print(f"marked {run.marked}, archived {run.archived}")
        print(
            f"deleted {run.deleted} export(s), reclaimed {run.proxies_reclaimed} old proxies; "
            f"freed {_size(run.bytes_freed)}"
        )
        return 0
    if verb == "restore":
        try:
            export = await gc.restore(
                db=db, store=store, actor=args.actor_user, export_id=args.export_id
            )
        except NotFoundError as exc:
            print(exc.message, file=sys.stderr)
            return 1
        assert export.id is not None
        print(
            f"restored export {ids.encode('Export', export.id)} (version {export.version} "
            f"of project {ids.encode('Project', export.project_id)})"
        )
        return 0
    raise AssertionError(verb)


def cmd_gc(settings: Settings, args: argparse.Namespace) -> int:
    """Entry point of `editgraph gc`."""
    return asyncio.run(_run(settings, args))


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `editgraph gc` and its verbs."""
    parser = sub.add_parser(
        "gc", help="garbage-collect old exports: candidates, mark, archive, delete"
    )
    verbs = parser.add_subparsers(dest="gc_command", required=True)
    for name, text in (
        ("candidates", "list what mark would flag (a dry run)"),
        ("mark", "flag old, unpinned, non-latest exports; moves nothing"),
        ("archive", "move marked exports to archive/ (pins and latest win)"),
        ("delete", "permanently delete archived exports past the retention"),
        ("full-cycle", "mark, archive and delete in one go"),
        ("restore", "bring an archived export back"),
    ):
        verb = verbs.add_parser(name, help=text)
        verb.set_defaults(handler=cmd_gc)
        if name in ("candidates", "mark", "full-cycle"):
            verb.add_argument("--days-old", type=_count, default=30)
            verb.add_argument("--keep-latest", type=_count, default=1)
        if name in ("delete", "full-cycle"):
            verb.add_argument("--days-in-archive", type=_count, default=30)
            verb.add_argument("--yes", action="store_true", help="confirm permanent deletion")
        if name == "delete":
            verb.add_argument(
                "--proxy-days-old",
                type=int,
                default=30,
                help="also take back proxies of old versions older than this (they render again)",
            )
            verb.add_argument(
                "--segment-days-old",
                type=int,
                default=None,
                help="and proxy segments nothing has used for this many days "
                "(default: EDITGRAPH_GC_SEGMENT_DAYS, 7)",
            )
        if name in ("mark", "archive", "delete", "full-cycle"):
            verb.add_argument("--dry-run", action="store_true", help="show, change nothing")
        if name == "restore":
            verb.add_argument(
                "export_id", type=_export_id, help="the export's id, as the API shows it"
            )
        verb.add_argument(
            "--actor",
            default=None,
            help="who runs it, for the audit: an account's name is recorded as that account "
            "(default: your OS user name, recorded as a name only)",
        )

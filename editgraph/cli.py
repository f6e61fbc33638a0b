"""editgraph: a GraphQL server for non-destructive video editing."""

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from editgraph import cluster, gc_cli, import_cli, logs, metrics
from editgraph.cluster import DEFAULT_DATABASE
from editgraph.media import SECRET_FILE, local_secret
from editgraph.redis_embed import EmbeddedRedis
from editgraph.serving import Processes, exit_on_signal, serve_one
from editgraph.settings import DEFAULT_SECRET, Settings
from jobs.reconcile import clean_temp
from jobs.worker import run_forever
from models.db import Database
from models.migrate import upgrade
from resolvers import users
from resolvers.errors import DomainError


async def _migrate(settings: Settings) -> None:
    _ensure_sqlite_dir(settings)
    db = Database(settings.database_url)
    try:
        await upgrade(db)
    finally:
        await db.dispose()


async def _clean_temp(settings: Settings) -> None:
    """What a crash left in temp/ (a killed upload, a render's partial files) goes at start-up."""
    db = Database(settings.database_url)
    try:
        removed = await clean_temp(db=db, store=settings.store(), grace_s=settings.temp_grace_s)
    finally:
        await db.dispose()
    if removed:
        print(f"removed {removed} stale temp entries left by a crash")


def _ensure_sqlite_dir(settings: Settings) -> None:
    prefix = "sqlite+aiosqlite:///"
    if settings.database_url.startswith(prefix):
        path = settings.database_url.removeprefix(prefix)
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


async def _create_user(settings: Settings, name: str, admin: bool) -> str:
    db = Database(settings.database_url)
    try:
        _, token = await users.create_user(db=db, name=name, is_admin=admin)
    finally:
        await db.dispose()
    return token


async def _first_admin(settings: Settings) -> str | None:
    db = Database(settings.database_url)
    try:
        if await users.count_users(db=db) > 0:
            return None
        _, token = await users.create_user(db=db, name="admin", is_admin=True)
        return token
    finally:
        await db.dispose()


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    asyncio.run(_migrate(settings))
    print(f"database is up to date: {settings.database_url}")
    return 0


def cmd_user_create(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(_migrate(settings))
    try:
        token = asyncio.run(_create_user(settings, args.name, args.admin))
    except DomainError as exc:
        print(f"editgraph: {exc.message}", file=sys.stderr)
        return 2
    role = "admin" if args.admin else "user"
    print(f"created {role} {args.name!r}. The token is shown once; keep it:")
    print(token)
    return 0


async def _new_token(settings: Settings, name: str, label: str) -> str | None:
    db = Database(settings.database_url)
    try:
        user = await users.user_by_name(db=db, name=name)
        if user is None or user.id is None:
            return None
        _, token = await users.create_token(db=db, user_id=user.id, label=label)
        return token
    finally:
        await db.dispose()


def cmd_user_token(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(_migrate(settings))
    token = asyncio.run(_new_token(settings, args.name, args.label))
    if token is None:
        print(f"editgraph: no user named {args.name!r}", file=sys.stderr)
        return 1
    print(f"a new token for {args.name!r} (its other tokens still work). Shown once; keep it:")
    print(token)
    return 0


def cmd_schema(_: Settings, args: argparse.Namespace) -> int:
    from schema.root import SDL_PATH, sdl

    if args.check:
        if SDL_PATH.read_text() != sdl():
            print(f"{SDL_PATH} is stale: run `editgraph schema`", file=sys.stderr)
            return 1
        return 0
    SDL_PATH.write_text(sdl())
    print(f"wrote {SDL_PATH}")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    host = args.host or settings.host
    port = args.port or settings.port
    asyncio.run(_migrate(settings))
    asyncio.run(_clean_temp(settings))
    token = asyncio.run(_first_admin(settings))
    if settings.env == "development" and settings.secret_key == DEFAULT_SECRET:
        # The shipped secret would let anyone mint media links; production refuses it.
        settings = settings.model_copy(update={"secret_key": local_secret(settings.data_dir)})
        print(f"media links are signed with the secret in {settings.data_dir / SECRET_FILE}")
    embedded: EmbeddedRedis | None = None
    if settings.redis_url is None:
        embedded = EmbeddedRedis(settings.data_dir / "redis")
        settings = settings.model_copy(update={"redis_url": embedded.start()})
        # If it dies, it is restarted on the same port (with backoff), and each restart logged.
        embedded.supervise()
        print(f"embedded redis-server on {settings.redis_url} (stops with the server)")
    try:
        where = f"http://{host}:{port}/graphql"
        print(f"GraphiQL: {where}" if settings.graphiql_enabled else f"GraphQL: {where}")
        print(f"admin console: http://{host}:{port}/admin")
        if token:
            print("first start: created user 'admin'. Its token is shown once; keep it:")
            print(f"  Authorization: Bearer {token}")
        if settings.embedded_worker:
            where = "in this process" if settings.workers == 1 else "in server process 0"
            print(f"render worker: {where}, {settings.render_concurrency} at a time")
        sys.stdout.flush()
        # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit so
        # the `finally` blocks still stop the worker and the embedded redis-server.
        signal.signal(signal.SIGTERM, exit_on_signal)
        if settings.workers > 1:
            print(f"{settings.workers} server processes on port {port}")
            sys.stdout.flush()
            return Processes(settings, host, port, args.log_level).run()
        else:
            asyncio.run(
                serve_one(settings, host, port, args.log_level, worker=settings.embedded_worker)
            )
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def cmd_worker(settings: Settings, _: argparse.Namespace) -> int:
    if settings.redis_url is None:
        print(
            "editgraph worker: set EDITGRAPH_REDIS_URL to the Redis the server uses",
            file=sys.stderr,
        )
        return 2
    asyncio.run(_migrate(settings))
    asyncio.run(_clean_temp(settings))
    print(f"render worker: {settings.render_concurrency} at a time, queue on {settings.redis_url}")
    # Its own renders, attempts and retries, on its own address (no auth: a private one).
    listener = metrics.Listener(settings.metrics_addr) if settings.metrics_addr else None
    if listener is not None:
        print(f"metrics: http://{settings.metrics_addr}/metrics")
    sys.stdout.flush()
    # SIGTERM/SIGINT end the worker; running renders are released and picked up again.
    signal.signal(signal.SIGTERM, exit_on_signal)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_forever(settings))
    finally:
        if listener is not None:
            listener.stop()
    return 0


def cmd_cluster(settings: Settings, args: argparse.Namespace) -> int:
    url = args.database_url or (
        settings.database_url if settings.database_url.startswith("postgresql") else None
    )
    signal.signal(signal.SIGTERM, exit_on_signal)  # stops every child, as Ctrl-C does
    return cluster.run(args.folder, url or DEFAULT_DATABASE, args.servers, args.workers)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per verb."""
    parser = argparse.ArgumentParser(
        prog="editgraph", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="migrate, then serve GraphQL (and GraphiQL in development)"
    )
    serve.add_argument("--host", default=None, help="address to bind (default: EDITGRAPH_HOST)")
    serve.add_argument("--port", type=int, default=None, help="port (default: EDITGRAPH_PORT)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=cmd_serve)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(handler=cmd_migrate)
    sub.add_parser("worker", help="run a render worker (needs EDITGRAPH_REDIS_URL)").set_defaults(
        handler=cmd_worker
    )
    user = sub.add_parser("user", help="manage accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    create = user_sub.add_parser("create", help="create an account and print its token once")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="may run admin-only fields")
    create.set_defaults(handler=cmd_user_create)
    token = user_sub.add_parser(
        "token", help="print a new token for an account (a lost admin login, a new script)"
    )
    token.add_argument("name")
    token.add_argument("--label", default="issued by the command line")
    token.set_defaults(handler=cmd_user_token)
    gc_cli.add_parser(sub)
    import_cli.add_parser(sub)
    cluster = sub.add_parser(
        "cluster", help="run a cluster on this machine: servers, workers, Redis and an S3 endpoint"
    )
    cluster.add_argument("--folder", type=Path, default=Path("data/cluster"))
    cluster.add_argument("--database-url", default=None, help=f"default: {DEFAULT_DATABASE}")
    cluster.add_argument("--servers", type=int, default=2)
    cluster.add_argument("--workers", type=int, default=3)
    cluster.set_defaults(handler=cmd_cluster)
    schema = sub.add_parser("schema", help="write schema/schema.graphql from the code")
    schema.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    schema.set_defaults(handler=cmd_schema)
    parser.epilog = "every command (each takes --help):\n" + "\n".join(_commands(parser))
    return parser


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Each command and sub-command with its one-line help, for ``editgraph --help``."""
    lines = []
    # argparse keeps sub-commands and their help only in these private attributes.
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help or "" for a in action._choices_actions}
        for name, sub in action.choices.items():
            command = f"{prefix}{name}"
            nested = _commands(sub, f"{command} ")
            lines += nested or [f"  {command:<20} {helps.get(name, '')}"]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``editgraph`` command."""
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"editgraph: invalid settings: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, getattr(args, "log_level", "info"))
    return int(args.handler(settings, args))


if __name__ == "__main__":
    sys.exit(main())

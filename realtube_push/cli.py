"""``realtube-push``: one entry point for every way the service runs.

Each subcommand's description below is what ``realtube-push <command> --help`` prints. The
commands that need a database (``migrate``, ``export``, ``worker``) use ``DATABASE_URL`` and
``REDIS_URL`` when set, else the embedded stack under ``--data-dir``, the one ``dev`` runs.

``watch`` is the Python live client and runs on the base install; the other commands need the
server's dependencies (``pip install 'realtube-push[server]'``), imported only when one runs.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import secrets
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from realtube_push.config import Settings
    from realtube_push.services import Services

PROG = "realtube-push"
DEFAULT_DATA_DIR = Path(".realtube")

# command: (one line for the command list, the description its --help prints)
COMMANDS = {
    "dev": (
        "run everything on this machine, with embedded PostgreSQL and Redis",
        "Run the whole service on this machine: embedded PostgreSQL and Redis under "
        "--data-dir (unless DATABASE_URL/REDIS_URL are set), migrations, the API, the live "
        "channel and the workers. Prints where everything is, with an admin token.",
    ),
    "serve": (
        "run the API and workers against DATABASE_URL/REDIS_URL",
        "Run the API, the live channel and (unless RUN_WORKERS=false) the workers against "
        "DATABASE_URL and REDIS_URL, in WEB_CONCURRENCY processes. Applies pending migrations "
        "first.",
    ),
    "worker": (
        "run the background workers alone",
        "Run the background workers alone (scores, channels, trust, pruning, the full-sync "
        "body), with no HTTP.",
    ),
    "migrate": (
        "apply pending database migrations",
        "Apply the pending database migrations (idempotent) and print them.",
    ),
    "export": (
        "write the public database export into EXPORT_DIR",
        "Write the public database export (pg_dump file and CSV bundle) into EXPORT_DIR "
        "(default: exports/ under --data-dir).",
    ),
    "watch": (
        "print each live delta of a server as it arrives",
        "Follow a server's live channel and print each delta as it arrives (a client: needs "
        "no database).",
    ),
}
DATA_DIR_HELP = (
    "where the embedded PostgreSQL and Redis keep their data, used when DATABASE_URL/REDIS_URL "
    "are unset (default: %(default)s)"
)
PORT_HELP = "port to listen on (default: PORT from the environment, else 8080)"


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The RealTube server with a live channel. "
        f"Run '{PROG} COMMAND --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, argparse.ArgumentParser] = {}
    for name, (summary, description) in COMMANDS.items():
        commands[name] = sub.add_parser(name, help=summary, description=description)
    dev = commands["dev"]
    dev.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR", help=DATA_DIR_HELP
    )
    dev.add_argument("--port", type=int, default=None, metavar="N", help=PORT_HELP)
    serve = commands["serve"]
    serve.add_argument("--port", type=int, default=None, metavar="N", help=PORT_HELP)
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations")
    serve.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)
    for name in ("worker", "migrate", "export"):
        commands[name].add_argument(
            "--data-dir", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR", help=DATA_DIR_HELP
        )
    watch = commands["watch"]
    watch.add_argument(
        "--url",
        default="http://127.0.0.1:8080",
        help="the server's base URL (default: %(default)s)",
    )
    watch.add_argument(
        "--buckets", default=None, help="hash-prefix buckets to follow, e.g. ab,c3 (default: all)"
    )
    watch.add_argument(
        "--transport",
        choices=("ws", "sse", "poll"),
        default=None,
        help="force one transport (default: WebSocket, falling back to SSE, then polling)",
    )
    watch.add_argument(
        "--poll-interval",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="seconds between polls with --transport poll (default: %(default)s)",
    )
    watch.add_argument("--json", action="store_true", help="print one JSON object per line")
    return parser, commands


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line; a usage error exits 2 with the subcommand's own usage."""
    parser, commands = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    if args.command == "watch":  # a client of the public API: no server settings needed
        from realtube_push.client.watch import main as watch_main

        return watch_main(
            args.url,
            buckets=args.buckets,
            transport=args.transport,
            poll_interval=args.poll_interval,
            as_json=args.json,
        )
    try:
        from pydantic import ValidationError

        from realtube_push.config import Settings
        from realtube_push.logs import configure_logging
        from realtube_push.services import ServiceUnavailable
    except ModuleNotFoundError as exc:
        print(
            f"{PROG} {args.command}: the server's dependencies are not installed "
            f"({exc.name} is missing): pip install 'realtube-push[server]'",
            file=sys.stderr,
        )
        return 2
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"{PROG}: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    if getattr(args, "port", None) is not None:
        settings = settings.model_copy(update={"port": args.port})
    data_dir: Path | None = getattr(args, "data_dir", None)
    if data_dir is not None:
        settings = _dev_defaults(settings, data_dir, salt=args.command == "dev")
    configure_logging(
        settings.log_level,
        log_format=settings.log_format,
        ip_hash_salt=settings.ip_hash_salt.get_secret_value(),
    )
    try:
        if args.command == "dev":
            return _dev(settings, args.data_dir)
        if args.command == "serve":
            return _serve(settings, migrate=not args.no_migrate, listen_fd=args.listen_fd)
        if args.command == "migrate":
            with _stack(settings, args.data_dir, with_redis=False) as ready:
                _migrate(ready)
            return 0
        if args.command == "export":
            with _stack(settings, args.data_dir, with_redis=False) as ready:
                return _export(ready)
        if args.command == "worker":
            with _stack(settings, args.data_dir, with_redis=True) as ready:
                _run(ready.model_copy(update={"run_workers": True}), listener=None)
            return 0
    except ServiceUnavailable as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    return 1


def _dev_defaults(settings: Settings, data_dir: Path, *, salt: bool) -> Settings:
    """Settings for a command on the dev stack: exports under the data directory unless
    EXPORT_DIR is set, and (for ``dev``) an IP hash salt kept there unless IP_HASH_SALT is."""
    from pydantic import SecretStr

    update: dict[str, object] = {}
    if "export_dir" not in settings.model_fields_set:
        update["export_dir"] = data_dir.resolve() / "exports"
    if salt and "IP_HASH_SALT" not in os.environ:
        salt_file = data_dir / "ip_hash_salt"
        data_dir.mkdir(parents=True, exist_ok=True)
        if not salt_file.exists():
            salt_file.write_text(secrets.token_hex(16))
        update["ip_hash_salt"] = SecretStr(salt_file.read_text())
    return settings.model_copy(update=update)


class PortInUse(Exception):
    """The port to listen on is taken (or cannot be used); the message says what to do."""


def listen(settings: Settings, *, hint: str) -> socket.socket:
    """Bind and listen on HOST:PORT before anything starts, so a taken port is one line."""
    from realtube_push.supervisor import listening_socket

    try:
        return listening_socket(settings.host, settings.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"port {settings.port} is in use; {hint}") from exc
        raise PortInUse(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}; {hint}"
        ) from exc


def _serve(settings: Settings, *, migrate: bool, listen_fd: int | None) -> int:
    if listen_fd is not None:  # a child of the supervisor, on the socket it bound
        _run(_require_urls(settings), listener=socket.socket(fileno=listen_fd))
        return 0
    settings = _require_urls(settings)
    try:
        listener = listen(settings, hint="set PORT or pass --port N")
    except PortInUse as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    with listener:
        if migrate:
            _migrate(settings)
        if settings.web_concurrency > 1:
            from realtube_push.supervisor import run_children

            return run_children(settings, settings.web_concurrency, listener)
        _run(settings, listener=listener)
    return 0


def _require_urls(settings: Settings) -> Settings:
    from realtube_push.services import ServiceUnavailable

    if not settings.database_url or not settings.redis_url:
        raise ServiceUnavailable(f"DATABASE_URL and REDIS_URL must be set (or run `{PROG} dev`)")
    return settings


def _migrate(settings: Settings) -> None:
    import asyncpg

    from realtube_push.services import ServiceUnavailable
    from realtube_push.store import db

    async def apply() -> None:
        assert settings.database_url is not None
        try:
            directory = db.migrations_dir(settings.migrations_dir)
        except FileNotFoundError as exc:
            raise ServiceUnavailable(str(exc)) from exc
        try:
            conn = await asyncpg.connect(settings.database_url, timeout=10)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise ServiceUnavailable(f"PostgreSQL unreachable: {exc}") from exc
        try:
            applied = await db.apply_migrations(conn, directory)
        finally:
            await conn.close()
        print(
            f"migrations applied: {', '.join(applied) if applied else 'none pending'}", flush=True
        )

    anyio.run(apply)


def _export(settings: Settings) -> int:
    from realtube_push.export import ExportError, run_export

    try:
        result = anyio.run(run_export, settings)
    except ExportError as exc:
        print(f"{PROG}: export failed: {exc}", file=sys.stderr)
        return 1
    rows = ", ".join(f"{table} {count}" for table, count in result.rows.items())
    print(f"export written: {result.dump} and {result.csv} ({rows})", flush=True)
    return 0


def _run(settings: Settings, *, listener: socket.socket | None, banner: str | None = None) -> None:
    from realtube_push.app import run

    def on_ready(_: Services) -> None:
        if banner:
            print(banner, flush=True)

    anyio.run(
        lambda: run(settings, listener=listener, on_ready=on_ready),
        backend="asyncio",
        backend_options={"use_uvloop": _has_uvloop()},
    )


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _stack(
    settings: Settings, data_dir: Path, *, with_redis: bool, watch_redis: bool = False
) -> Iterator[Settings]:
    """``settings`` with the embedded services under ``data_dir`` filling in whichever of
    DATABASE_URL/REDIS_URL is unset (started if ``dev`` is not running them)."""
    missing_redis = with_redis and not settings.redis_url
    if settings.database_url and not missing_redis:
        yield settings
        return
    from realtube_push.devstack import embedded_stack

    what = "PostgreSQL and Redis" if missing_redis else "PostgreSQL"
    print(f"using the embedded {what} under {data_dir.resolve()} ...", flush=True)
    with embedded_stack(data_dir, with_redis=missing_redis, watch_redis=watch_redis) as stack:
        yield settings.model_copy(
            update={
                "database_url": settings.database_url or stack.database_url,
                "redis_url": settings.redis_url or stack.redis_url,
            }
        )


def _dev(settings: Settings, data_dir: Path) -> int:
    from pydantic import SecretStr

    try:
        listener = listen(settings, hint="pass --port N")
    except PortInUse as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    token_note = ""
    if settings.admin_token is None:
        token = secrets.token_urlsafe(18)
        settings = settings.model_copy(update={"admin_token": SecretStr(token)})
        token_note = f"{token}  (set ADMIN_TOKEN to choose your own)"
    with listener, _stack(settings, data_dir, with_redis=True, watch_redis=True) as ready:
        _migrate(ready)
        banner = _banner(ready, settings, listener, data_dir, token_note)
        if ready.web_concurrency > 1:
            from realtube_push.supervisor import run_children

            return run_children(ready, ready.web_concurrency, listener, banner=banner)
        _run(ready, listener=listener, banner=banner)
    return 0


def _banner(
    ready: Settings, given: Settings, listener: socket.socket, data_dir: Path, token_note: str
) -> str:
    """What ``dev`` prints once it serves: where everything is, and how to reach its stack."""
    host, port = listener.getsockname()[:2]
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    lines = [
        "RealTube push is running",
        f"  API:          {base}/api/stats  (OpenAPI: {base}/docs)",
        f"  dashboard:    {base}/admin/",
        f"  health:       {base}/health/ready",
        f"  live:         {base}/api/live/sse  (WebSocket: {base.replace('http', 'ws', 1)}"
        "/api/live/ws)",
    ]
    if token_note:
        lines.append(f"  admin token:  {token_note}")
    embedded = [
        (name, url)
        for name, url, own in (
            ("DATABASE_URL", ready.database_url, given.database_url),
            ("REDIS_URL", ready.redis_url, given.redis_url),
        )
        if not own
    ]
    if embedded:
        lines.append(f"  data:         {data_dir.resolve()} (embedded; to use it from a shell:)")
        lines.extend(f"    export {name}='{url}'" for name, url in embedded)
        lines.append(f"    or pass --data-dir {data_dir} to {PROG} migrate, export and worker")
    return "\n".join(lines)

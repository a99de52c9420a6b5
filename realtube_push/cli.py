"""``realtube-push``: one entry point for every way the service runs.

- ``dev``      embedded PostgreSQL + Redis under ``--data-dir`` (unless DATABASE_URL/REDIS_URL
               are set), migrations, HTTP + workers; prints where the API and dashboard are.
- ``serve``    HTTP + workers against DATABASE_URL/REDIS_URL; fails fast when unreachable.
- ``worker``   the background workers alone (no HTTP).
- ``migrate``  apply pending migrations (idempotent).
- ``export``   write the public database export (dump + CSV bundle) into EXPORT_DIR.
- ``watch``    follow a server's live channel and print each delta (a client: no database).

``watch`` is the Python live client and runs on the base install; the other commands need the
server's dependencies (``pip install 'realtube-push[server]'``), imported only when one runs.
"""

from __future__ import annotations

import argparse
import contextlib
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realtube-push", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="run with embedded PostgreSQL and Redis")
    dev.add_argument("--data-dir", type=Path, default=Path(".realtube"))
    dev.add_argument("--port", type=int, default=None, help="overrides PORT")
    serve = sub.add_parser("serve", help="run HTTP and workers against DATABASE_URL/REDIS_URL")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations")
    serve.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)
    sub.add_parser("worker", help="run the background workers alone")
    sub.add_parser("migrate", help="apply pending migrations")
    sub.add_parser("export", help="write the public database export into EXPORT_DIR")
    watch = sub.add_parser("watch", help="print each live delta of a server as it arrives")
    watch.add_argument("--url", default="http://127.0.0.1:8080", help="the server's base URL")
    watch.add_argument("--buckets", default=None, help="hash-prefix buckets, e.g. ab,c3")
    watch.add_argument("--transport", choices=("ws", "sse", "poll"), default=None)
    watch.add_argument("--poll-interval", type=float, default=1800.0, help="seconds (poll)")
    watch.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
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
            f"realtube-push {args.command}: the server's dependencies are not installed "
            f"({exc.name} is missing): pip install 'realtube-push[server]'",
            file=sys.stderr,
        )
        return 2
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"realtube-push: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    if args.command == "dev":
        settings = _dev_salt(settings, args.data_dir)
    configure_logging(
        settings.log_level,
        log_format=settings.log_format,
        ip_hash_salt=settings.ip_hash_salt.get_secret_value(),
    )
    try:
        if args.command == "dev":
            return _dev(settings, args.data_dir, args.port)
        if args.command == "migrate":
            _migrate(_require_urls(settings))
            return 0
        if args.command == "serve":
            settings = _require_urls(settings)
            if args.listen_fd is not None:  # a child of the supervisor, on the socket it bound
                _run(settings, listener=socket.socket(fileno=args.listen_fd))
                return 0
            with listen(settings) as listener:
                if not args.no_migrate:
                    _migrate(settings)
                if settings.web_concurrency > 1:
                    from realtube_push.supervisor import run_children

                    return run_children(settings, settings.web_concurrency, listener)
                _run(settings, listener=listener)
            return 0
        if args.command == "export":
            return _export(settings)
        if args.command == "worker":
            settings = _require_urls(settings).model_copy(update={"run_workers": True})
            _run(settings, listener=None)
            return 0
    except ServiceUnavailable as exc:
        print(f"realtube-push: {exc}", file=sys.stderr)
        return 2
    return 1


def _dev_salt(settings: Settings, data_dir: Path) -> Settings:
    """An IP hash salt kept in the data directory unless IP_HASH_SALT is set."""
    from pydantic import SecretStr

    if "IP_HASH_SALT" in os.environ:
        return settings
    salt_file = data_dir / "ip_hash_salt"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not salt_file.exists():
        salt_file.write_text(secrets.token_hex(16))
    return settings.model_copy(update={"ip_hash_salt": SecretStr(salt_file.read_text())})


def listen(settings: Settings) -> socket.socket:
    """The listening socket on HOST:PORT, bound before anything starts."""
    from realtube_push.supervisor import listening_socket

    return listening_socket(settings.host, settings.port)


def _require_urls(settings: Settings) -> Settings:
    from realtube_push.services import ServiceUnavailable

    if not settings.database_url or not settings.redis_url:
        raise ServiceUnavailable(
            "DATABASE_URL and REDIS_URL must be set (or run `realtube-push dev`)"
        )
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
        print(f"realtube-push: export failed: {exc}", file=sys.stderr)
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
def _dev_stack(settings: Settings, data_dir: Path) -> Iterator[Settings]:
    if settings.database_url and settings.redis_url:
        yield settings
        return
    from realtube_push.devstack import embedded_stack

    print(f"starting embedded PostgreSQL and Redis under {data_dir.resolve()} ...", flush=True)
    with embedded_stack(data_dir) as stack:
        yield settings.model_copy(
            update={
                "database_url": settings.database_url or stack.database_url,
                "redis_url": settings.redis_url or stack.redis_url,
            }
        )


def _dev(settings: Settings, data_dir: Path, port: int | None) -> int:
    from pydantic import SecretStr

    if port is not None:
        settings = settings.model_copy(update={"port": port})
    token_note = ""
    if settings.admin_token is None:
        token = secrets.token_urlsafe(18)
        settings = settings.model_copy(update={"admin_token": SecretStr(token)})
        token_note = f"\n  admin token: {token}  (set ADMIN_TOKEN to choose your own)"
    with listen(settings) as listener, _dev_stack(settings, data_dir) as ready_settings:
        _migrate(ready_settings)
        base = f"http://{ready_settings.host}:{ready_settings.port}"
        banner = (
            f"RealTube push is running\n  API:       {base}/api/stats  (OpenAPI: {base}/docs)\n"
            f"  dashboard: {base}/admin/\n  health:    {base}/health/ready{token_note}"
        )
        if ready_settings.web_concurrency > 1:
            from realtube_push.supervisor import run_children

            return run_children(
                ready_settings, ready_settings.web_concurrency, listener, banner=banner
            )
        _run(ready_settings, listener=listener, banner=banner)
    return 0

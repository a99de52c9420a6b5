"""The public database export: ``realtube-push export`` writes it, the API serves it.

Promises:

- One run writes two files into ``EXPORT_DIR``, named by the UTC day it started:
  ``realtube-db-YYYY-MM-DD.dump`` (``pg_dump`` custom format, for ``pg_restore``) and
  ``realtube-db-YYYY-MM-DD.csv.zip`` (one CSV with a header row per table). Both come from
  one snapshot and hold only the public columns (``store/export.py`` lists them and says why
  the rest stays home). A second run on the same day replaces that day's files.
- A file appears under its final name only once complete: it is written under a hidden
  ``.partial`` name and renamed, so a reader never gets half a dump.
- The newest ``EXPORT_KEEP`` files of each kind are kept, older ones deleted. Files whose
  names do not match the pattern are never touched.
- Readers (``GET /api/database/export``) choose a file only from a listing of the directory
  filtered by that strict pattern, regular files only (a symlink is never followed): no
  request input ever becomes part of a path.
"""

from __future__ import annotations

import enum
import importlib.util
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import anyio
import asyncpg
import structlog

from realtube_push.config import Settings
from realtube_push.store import db
from realtube_push.store import export as export_store

log = structlog.get_logger("realtube.export")

_NAME = re.compile(r"\Arealtube-db-(?P<day>\d{4}-\d{2}-\d{2})\.(?P<suffix>dump|csv\.zip)\Z")
_PARTIAL = re.compile(r"\A\.realtube-db-\d{4}-\d{2}-\d{2}\.(dump|csv\.zip)\.partial\Z")
_MAX_DATABASE_NAME = 63  # PostgreSQL's NAMEDATALEN - 1
_SCRATCH_SUFFIX = "__export"


class ExportError(RuntimeError):
    """The export could not be written; the message says why (nothing partial is left)."""


class ExportKind(enum.Enum):
    """The two files of an export, by file-name suffix."""

    DUMP = "dump"
    CSV = "csv.zip"

    @property
    def media_type(self) -> str:
        """The Content-Type it is served with."""
        return "application/zip" if self is ExportKind.CSV else "application/octet-stream"


@dataclass(frozen=True, slots=True)
class ExportFile:
    """One complete export file found in the export directory."""

    path: Path
    day: date
    kind: ExportKind

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What a run wrote and removed."""

    dump: Path
    csv: Path
    rows: dict[str, int]
    removed: list[Path]


def export_name(day: date, kind: ExportKind) -> str:
    """``realtube-db-YYYY-MM-DD.<suffix>``."""
    return f"realtube-db-{day.isoformat()}.{kind.value}"


def list_exports(directory: Path) -> list[ExportFile]:
    """Complete export files in ``directory``, newest first; none if it does not exist.

    Only regular files whose whole name matches the pattern (with a real calendar date)
    count; symlinks, partial files and anything else are ignored.
    """
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found: list[ExportFile] = []
    for entry in entries:
        match = _NAME.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            day = date.fromisoformat(match["day"])
        except ValueError:
            continue
        found.append(ExportFile(Path(entry.path), day, ExportKind(match["suffix"])))
    return sorted(found, key=lambda f: f.day, reverse=True)


def newest_export(directory: Path, kind: ExportKind) -> ExportFile | None:
    """The most recent complete export of ``kind``, or None."""
    return next((f for f in list_exports(directory) if f.kind is kind), None)


def prune_exports(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` files of each kind; returns what was deleted."""
    removed: list[Path] = []
    for kind in ExportKind:
        for old in [f for f in list_exports(directory) if f.kind is kind][keep:]:
            old.path.unlink(missing_ok=True)
            removed.append(old.path)
    return removed


def find_pg_tool(name: str, configured: str | None = None) -> str:
    """The path of a PostgreSQL client program (``pg_dump``, ``pg_restore``).

    ``configured`` (``PG_DUMP_PATH``) wins. Otherwise pgserver's bundled copy (PostgreSQL 16,
    installed with this package, so present in the image and in dev), else the one on PATH.
    The bundled one comes first because Debian's default client is older than the
    PostgreSQL 16 server we ship, and ``pg_dump`` refuses servers newer than itself.
    """
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise ExportError(f"{name} not found at {configured!r} (PG_DUMP_PATH)")
        return found
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "pginstall" / "bin" / name
        if os.access(bundled, os.X_OK):
            return str(bundled)
    found = shutil.which(name)
    if found is None:
        raise ExportError(f"{name} not found: install the PostgreSQL client or set PG_DUMP_PATH")
    return found


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (host, socket directory and credentials kept)."""
    parts = urlsplit(url)
    return urlunsplit(
        (parts.scheme, parts.netloc, "/" + quote(name, safe=""), parts.query, parts.fragment)
    )


def libpq_target(url: str) -> tuple[str, dict[str, str]]:
    """(URL without its password, environment carrying it as ``PGPASSWORD``).

    A password on a command line is readable by every local user (``ps``); in the
    environment it is readable only by the process's owner.
    """
    parts = urlsplit(url)
    env = dict(os.environ)
    if "@" not in parts.netloc:
        return url, env
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    if password:
        env["PGPASSWORD"] = unquote(password)
    netloc = f"{user}@{host}" if user else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), env


def _scratch_name(source: str) -> str:
    name = source[: _MAX_DATABASE_NAME - len(_SCRATCH_SUFFIX)] + _SCRATCH_SUFFIX
    if name == source:  # the scratch database is dropped: it must never be the live one
        raise ExportError(f"cannot derive a scratch database name from {source!r}")
    return name


def _remove_partials(directory: Path) -> None:
    for entry in os.scandir(directory):
        if _PARTIAL.match(entry.name) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)


def _zip(members: list[tuple[Path, str]], target: Path) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for path, arcname in members:
            bundle.write(path, arcname)


async def _fill_scratch(source: asyncpg.Connection, scratch: asyncpg.Connection) -> dict[str, int]:
    """Create the public tables in the scratch database and copy one snapshot into them."""
    await export_store.create_public_schema(scratch)
    rows: dict[str, int] = {}
    # One repeatable-read snapshot: votes never refer to a video the export lacks.
    async with source.transaction(isolation="repeatable_read", readonly=True):
        for table in export_store.PUBLIC_TABLES:
            rows[table.name] = await export_store.copy_table(source, scratch, table)
    return rows


async def _write_csv_bundle(scratch: asyncpg.Connection, target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".csv-") as tmp:
        members: list[tuple[Path, str]] = []
        for table in export_store.PUBLIC_TABLES:
            path = Path(tmp) / f"{table.name}.csv"
            await export_store.write_csv(scratch, table, path)
            members.append((path, path.name))
        await anyio.to_thread.run_sync(_zip, members, target)


async def _pg_dump(pg_dump: str, scratch_url: str, target: Path) -> None:
    dsn, env = libpq_target(scratch_url)
    result = await anyio.run_process(
        [
            pg_dump,
            "--format=custom",
            # no grants: they name roles of our cluster (owners are left to
            # `pg_restore --no-owner`, the only place a custom-format dump can drop them)
            "--no-privileges",
            f"--file={target}",
            f"--dbname={dsn}",
        ],
        env=env,
        check=False,
    )
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()[-2000:]
        raise ExportError(f"pg_dump exited with {result.returncode}: {detail}")


async def run_export(settings: Settings, *, day: date | None = None) -> ExportResult:
    """Write today's dump and CSV bundle into ``EXPORT_DIR`` and prune old ones."""
    if not settings.database_url:
        raise ExportError("DATABASE_URL must be set")
    pg_dump = find_pg_tool("pg_dump", settings.pg_dump_path)
    day = day or datetime.now(UTC).date()
    directory = settings.export_dir
    directory.mkdir(parents=True, exist_ok=True)
    final = {kind: directory / export_name(day, kind) for kind in ExportKind}
    partial = {kind: path.with_name(f".{path.name}.partial") for kind, path in final.items()}
    try:
        source = await asyncpg.connect(settings.database_url, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise ExportError(f"PostgreSQL unreachable: {exc}") from exc
    try:
        if not await export_store.try_lock(source):
            raise ExportError("another export of this database is running")
        _remove_partials(directory)
        scratch_name = _scratch_name(await export_store.database_name(source))
        await export_store.create_database(source, scratch_name)
        try:
            scratch_url = with_database(settings.database_url, scratch_name)
            scratch = await db.connect(scratch_url)
            try:
                rows = await _fill_scratch(source, scratch)
                await _write_csv_bundle(scratch, partial[ExportKind.CSV])
            finally:
                await scratch.close()
            await _pg_dump(pg_dump, scratch_url, partial[ExportKind.DUMP])
            for kind in ExportKind:
                partial[kind].replace(final[kind])
        finally:
            with anyio.CancelScope(shield=True):
                await export_store.drop_database(source, scratch_name)
                _remove_partials(directory)
    finally:
        with anyio.CancelScope(shield=True):
            await source.close()  # closing the session also releases the advisory lock
    removed = prune_exports(directory, settings.export_keep)
    log.info(
        "export_written",
        dump=final[ExportKind.DUMP].name,
        csv=final[ExportKind.CSV].name,
        rows=rows,
        removed=[p.name for p in removed],
    )
    return ExportResult(final[ExportKind.DUMP], final[ExportKind.CSV], rows, removed)

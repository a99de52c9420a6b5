"""``realtube-push watch``: follow a server's live channel and print what happens, line by line.

Promises: one line per applied delta (``seq``, action, kind, id, score, categories), one per
status change (transport, connected, cursor), one per full sync and one per wait before
another attempt (what is tried next, after how long, and why the last attempt failed), each
flushed as it is written, so a pipe (or a test reading stdout) sees it at once: a server
that cannot be reached shows every retry, not one error and then silence. ``--json`` prints
the same as one JSON object per line (``"type"``: ``"delta"``, ``"status"``, ``"full"`` or
``"retry"``). Needs no database or Redis, nor the server's dependencies: it is a client of
the public API only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, TextIO

import anyio
import orjson

from realtube_push.client.cache import Change, Cursor
from realtube_push.client.live import LiveClient
from realtube_push.client.observe import Retry, Status
from realtube_push.client.options import TRANSPORTS, LiveOptions, Transport
from realtube_push.client.wire import normalize_buckets


def _cursor(cursor: Cursor | None) -> str:
    return "-" if cursor is None else str(cursor)


def _categories_text(delta: Mapping[str, Any]) -> str:
    cats = delta.get("categories")
    if isinstance(cats, Mapping) and cats:
        return ",".join(
            f"{name}:{value.get('weightedScore') if isinstance(value, Mapping) else value}"
            for name, value in cats.items()
        )
    top = delta.get("topCategories")
    if isinstance(top, list) and top:
        return ",".join(str(c) for c in top)
    return "-"


def delta_line(change: Change, *, as_json: bool) -> str:
    """One applied delta as a line."""
    delta = change.delta or change.item or {}
    action = delta.get("action", change.action)
    if as_json:
        categories = delta.get("categories", delta.get("topCategories"))
        return orjson.dumps(
            {
                "type": "delta",
                "seq": change.seq,
                "action": action,
                "kind": change.kind,
                "id": change.id,
                "score": delta.get("score"),
                "categories": categories,
            }
        ).decode()
    return (
        f"seq={change.seq} {action} {change.kind} {change.id} "
        f"score={delta.get('score')} categories={_categories_text(delta)}"
    )


def status_line(status: Status, *, as_json: bool) -> str:
    """A status change as a line."""
    if as_json:
        return orjson.dumps(
            {
                "type": "status",
                "transport": status.transport,
                "connected": status.connected,
                "cursor": None if status.cursor is None else status.cursor.seq,
                "epoch": None if status.cursor is None else status.cursor.epoch,
                "url": status.url,
                "resume": status.resume,
                "error": status.error,
            }
        ).decode()
    line = (
        f"status transport={status.transport or '-'} "
        f"connected={'yes' if status.connected else 'no'} cursor={_cursor(status.cursor)} "
        f"url={status.url}"
    )
    if status.resume:
        line += f" resume={status.resume}"
    if status.error:
        line += f" error={status.error!r}"
    return line


def retry_line(retry: Retry, *, as_json: bool) -> str:
    """A wait before another attempt as a line."""
    if as_json:
        return orjson.dumps(
            {
                "type": "retry",
                "next": retry.next,
                "delay": round(retry.delay, 3),
                "url": retry.url,
                "reason": retry.reason,
            }
        ).decode()
    return f"retry {retry.next} in {retry.delay:.2f}s url={retry.url} after: {retry.reason}"


def full_line(client: LiveClient, *, as_json: bool) -> str:
    """A completed full sync as a line."""
    cache = client.cache
    if as_json:
        return orjson.dumps(
            {
                "type": "full",
                "videos": len(cache.videos),
                "channels": len(cache.channels),
                "cursor": None if cache.cursor is None else cache.cursor.seq,
                "epoch": None if cache.cursor is None else cache.cursor.epoch,
            }
        ).decode()
    return (
        f"full sync: {len(cache.videos)} videos, {len(cache.channels)} channels, "
        f"cursor={_cursor(cache.cursor)}"
    )


async def watch(
    url: str,
    *,
    buckets: Sequence[str] | None = None,
    transports: Sequence[Transport] = TRANSPORTS,
    poll_interval: float = 1800.0,
    as_json: bool = False,
    out: TextIO = sys.stdout,
) -> None:
    """Run a ``LiveClient`` and print its deltas, status changes and retries until cancelled."""

    def emit(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    client: LiveClient

    def applied(source: str, changes: Sequence[Change]) -> None:
        if source == "full":
            emit(full_line(client, as_json=as_json))
            return
        for change in changes:
            emit(delta_line(change, as_json=as_json))

    options = LiveOptions(
        buckets=None if buckets is None else tuple(buckets),
        transports=tuple(transports),
        poll_interval=poll_interval,
    )
    client = LiveClient(
        url,
        options,
        on_applied=applied,
        on_status=lambda status: emit(status_line(status, as_json=as_json)),
        on_retry=lambda retry: emit(retry_line(retry, as_json=as_json)),
    )
    await client.run()


def main(
    url: str,
    *,
    buckets: str | None,
    transport: Transport | None,
    poll_interval: float,
    as_json: bool,
) -> int:
    """The ``watch`` subcommand; returns the exit code (2 on bad arguments, 130 on Ctrl-C)."""
    try:
        bucket_list = normalize_buckets(buckets.split(",")) if buckets else None
    except ValueError as exc:
        print(f"realtube-push watch: {exc}", file=sys.stderr)
        return 2
    runner = partial(
        watch,
        url,
        buckets=bucket_list,
        transports=(transport,) if transport else TRANSPORTS,
        poll_interval=poll_interval,
        as_json=as_json,
    )
    try:
        anyio.run(runner)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`watch | head`): stop quietly, like any Unix filter
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0

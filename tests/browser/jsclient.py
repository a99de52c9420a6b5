"""Driving ``clients/js/realtube-live.js`` in a page, and reading IndexedDB behind its back.

The page is the server's own ``/client/demo.html`` (same origin as the API). The client is
imported and started from the test, its events recorded on ``window``:

- ``window.seen``: every applied video delta ``{videoId, action, score, locked, source, at}``
  (``at`` = ``Date.now()`` when applied), plus ``{reset: true, source: "full"}`` markers;
- ``window.statuses``: every ``status`` event's detail;
- ``window.voteEvents``: every ``vote`` event's detail.

IndexedDB is read with the raw API on a separate connection, so a test checks what is
stored, not what the client says it stored.
"""

from __future__ import annotations

from typing import Any

from realtube_push.domain.ids import entity_hash
from tests.support import ids

# Timings shortened so reconnects and fallbacks happen within a test.
FAST = {
    "backoffInitialMs": 100,
    "backoffMaxMs": 400,
    "connectTimeoutMs": 3000,
    "lookupBatchMs": 10,
}

_START = """async (opts) => {
  const { RealTubeLive } = await import('/client/realtube-live.js');
  window.seen = [];
  window.statuses = [];
  window.voteEvents = [];
  const client = new RealTubeLive(opts);
  client.addEventListener('change', (e) => {
    const d = e.detail;
    if (d.reset) window.seen.push({ reset: true, source: d.source, at: Date.now() });
    for (const v of d.videos) window.seen.push({ ...v, source: d.source, at: Date.now() });
  });
  client.addEventListener('status', (e) => window.statuses.push(e.detail));
  client.addEventListener('vote', (e) => window.voteEvents.push(e.detail));
  window.client = client;
  await client.start();
  return client.status;
}"""

_IDB = """async ([dbName, store, key]) => {
  const db = await new Promise((resolve, reject) => {
    const r = indexedDB.open(dbName);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
  try {
    if (!db.objectStoreNames.contains(store)) return null;
    const s = db.transaction(store, 'readonly').objectStore(store);
    const r = key === null ? s.getAll() : s.get(key);
    return await new Promise((resolve, reject) => {
      r.onsuccess = () => resolve(r.result ?? null);
      r.onerror = () => reject(r.error);
    });
  } finally {
    db.close();
  }
}"""

DB_NAME = "realtube-live"


def open_page(page: Any, server_url: str) -> None:
    """Load the demo page of ``server_url`` (the client is served from the same origin)."""
    page.goto(f"{server_url}/client/demo.html")
    page.wait_for_function("() => window.RealTubeLive !== undefined")


def start_client(page: Any, **options: Any) -> dict[str, Any]:
    """Start a client in ``page`` (fast timings unless overridden); returns its status."""
    opts = {**FAST, "userId": options.pop("userId", ids.user_id()), **options}
    return page.evaluate(_START, opts)


def idb(page: Any, store: str, key: str | None = None) -> Any:
    """One record (or, with ``key`` None, all records) of an IndexedDB store."""
    return page.evaluate(_IDB, [DB_NAME, store, key])


_WAIT_IDB = (
    "async ([dbName, store, key, fields, timeoutMs]) => {\n"
    "  const read = " + _IDB + ";\n"
    """  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await read([dbName, store, key]);
    if (v !== null && Object.entries(fields).every(([k, want]) => v[k] === want)) return v;
    if (performance.now() > deadline) {
      throw new Error(`${store}/${key} after ${timeoutMs} ms: ${JSON.stringify(v)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}"""
)


def wait_for_video(page: Any, video_id: str, *, timeout_ms: float = 10_000, **fields: Any) -> Any:
    """Wait until ``flagged_videos`` holds ``video_id`` (with ``fields`` equal, if given).

    The wait runs in the page (IndexedDB reads are asynchronous), polling every 10 ms.
    """
    return page.evaluate(_WAIT_IDB, [DB_NAME, "flagged_videos", video_id, fields, timeout_ms])


def wait_for_status(
    page: Any, state: str, *, transport: str | None = None, timeout_ms: float | None = None
) -> None:
    """Wait until the client's status is ``state`` (on ``transport``, if given); the
    context's default timeout unless ``timeout_ms`` is given."""
    cond = f"s.state === {_js(state)}"
    if transport is not None:
        cond += f" && s.transport === {_js(transport)}"
    page.wait_for_function(
        f"() => {{ const s = window.client?.status; return s && {cond}; }}", timeout=timeout_ms
    )


def wait_for_js(
    page: Any, expression: str, arg: Any = None, *, timeout_ms: float | None = None
) -> Any:
    """Wait until a synchronous page expression (a function of ``arg``) is truthy; the
    context's default timeout unless ``timeout_ms`` is given."""
    return page.wait_for_function(expression, arg=arg, timeout=timeout_ms).json_value()


def seen(page: Any, video_id: str) -> list[dict[str, Any]]:
    """Deltas of ``video_id`` the client applied, oldest first."""
    return page.evaluate("(id) => window.seen.filter((v) => v.videoId === id)", video_id)


def _js(value: Any) -> str:
    import json

    return json.dumps(value)


def ids_sharing_prefix(count: int, length: int = 4) -> list[str]:
    """``count`` fresh video ids whose SHA-256 hex share the first ``length`` digits."""
    by_prefix: dict[str, list[str]] = {}
    while True:
        candidate = ids.video_id()
        group = by_prefix.setdefault(entity_hash(candidate)[:length], [])
        group.append(candidate)
        if len(group) == count:
            return group

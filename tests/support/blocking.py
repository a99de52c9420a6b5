"""Blocking HTTP for sync tests (the browser tests and the admin API's): vote, read a
video, wait for a server-side condition, and a live-channel subscriber in a thread.

The browser tests are sync (Playwright's sync API), so the Python side listens in a thread and
the test waits on a condition variable until a delta it expects has arrived.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.support import ids

# Settings of every server a sync test starts: a page's origin may open live connections, the
# full blob follows the log at once, restarts are quick, and heartbeats come every second (so
# a subscriber thread notices within a second that it should stop).
SERVER_ENV = {
    "CORS_ORIGINS": "http://127.0.0.1:*,chrome-extension://*",
    "FULL_BLOB_INTERVAL_SECONDS": "0.1",
    "LIVE_RECONNECT_DELAY_MS": "100",
    "LIVE_HEARTBEAT_SECONDS": "1",
    "SHUTDOWN_GRACE_SECONDS": "3",
}


class SseSubscriber:
    """Collects every delta of ``/api/live/sse`` (everything, no cursor) as it arrives."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.videos: list[dict[str, Any]] = []
        self.channels: list[dict[str, Any]] = []
        self.welcomed = threading.Event()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(5, read=None))

    def _run(self) -> None:
        event = ""
        try:
            with self._client.stream("GET", "/api/live/sse") as response:
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("event:"):
                        event = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        self._on(event, json.loads(line.split(":", 1)[1]))
        except Exception:
            if not self._stop.is_set():  # closing the client from the test ends the read
                raise

    def _on(self, event: str, frame: dict[str, Any]) -> None:
        if event == "welcome":
            self.welcomed.set()
        elif event == "deltas":
            with self._changed:
                self.videos.extend(frame["videos"])
                self.channels.extend(frame["channels"])
                self._changed.notify_all()

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, kind: str = "video", timeout: float
    ) -> dict[str, Any]:
        """The first delta received (of ``kind``) that matches ``predicate``; fails after
        ``timeout`` seconds."""
        items = self.videos if kind == "video" else self.channels
        with self._changed:
            found: list[dict[str, Any]] = []

            def match() -> bool:
                found[:] = [d for d in items if predicate(d)]
                return bool(found)

            if not self._changed.wait_for(match, timeout=timeout):
                raise AssertionError(f"no matching {kind} delta within {timeout}s: {items[-5:]}")
            return found[0]


@contextmanager
def subscribed(base_url: str) -> Iterator[SseSubscriber]:
    """An SSE subscriber that is welcomed (so it misses nothing from now on), closed after."""
    subscriber = SseSubscriber(base_url)
    subscriber._thread.start()
    try:
        if not subscriber.welcomed.wait(10):
            raise AssertionError("the SSE subscriber was not welcomed")
        yield subscriber
    finally:
        subscriber._stop.set()
        subscriber._client.close()
        subscriber._thread.join(timeout=10)


def vote(
    server_url: str,
    video_id: str,
    *,
    user_id: str | None = None,
    category: str = "fully_ai",
    **extra: Any,
) -> dict[str, Any]:
    """POST /api/votes as another client would; fails unless it succeeded."""
    body = {"videoId": video_id, "category": category, "userId": user_id or ids.user_id(), **extra}
    r = httpx.post(f"{server_url}/api/votes", json=body, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_until(
    condition: Any,
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
    last: Any = None,
) -> Any:
    """Poll a condition in another process (no event to await across processes) until it is
    truthy; fail after ``timeout`` seconds saying what it saw last (``last``, if given,
    names that better than the condition's own falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            seen = last if last is not None else value
            raise AssertionError(f"{what} not met within {timeout}s (last value: {seen!r})")
        time.sleep(interval)


def in_full_sync(server_url: str, video_ids: list[str]) -> bool:
    """Whether ``GET /api/sync/full`` already lists every one of ``video_ids``."""
    r = httpx.get(f"{server_url}/api/sync/full", timeout=10)
    r.raise_for_status()
    listed = {v["videoId"] for v in r.json()["videos"]}
    return set(video_ids) <= listed


def video(server_url: str, video_id: str) -> dict[str, Any] | None:
    """``GET /api/videos?videoId=``; None when unknown."""
    r = httpx.get(f"{server_url}/api/videos", params={"videoId": video_id}, timeout=10)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.json()

"""A live-channel subscriber for sync tests: an SSE stream read in a thread of its own.

The browser tests are sync (Playwright's sync API), so the Python side listens in a thread and
the test waits on a condition variable until a delta it expects has arrived.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx


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

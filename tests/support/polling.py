"""Waiting for the background workers: poll a condition until it holds or a deadline passes.

Only for what has no event to await (the score worker runs in another process, or after a
debounce); everything else in the suite awaits the real thing.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")


async def eventually(
    condition: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - a deadline for the assertion, not a cancel scope
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Return the first truthy value of ``condition()`` (sync or async), polled until ``timeout``.

    Fails with the last value seen, so a timeout says how far things got:

    >>> await eventually(lambda: queue_length(url), ...)  # doctest: +SKIP
    """
    deadline = anyio.current_time() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if anyio.current_time() >= deadline:
            raise AssertionError(f"{what} not met within {timeout}s (last value: {value!r})")
        await anyio.sleep(interval)

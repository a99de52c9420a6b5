"""Property-based checks against real servers started by function-scoped fixtures.

Hypothesis drives synchronous test functions, while our scenarios are async and need the
test's own event loop (its servers and clients). So Hypothesis runs in a worker thread and
each example runs back on the test's event loop through ``anyio.from_thread.run``.
Shrinking and the falsifying-example report work as usual.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio.from_thread
import anyio.to_thread
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

T = TypeVar("T")


async def for_all(
    strategy: st.SearchStrategy[T],
    check: Callable[[T], Awaitable[None]],
    *,
    max_examples: int = 12,
    examples: tuple[T, ...] = (),
) -> None:
    """Run ``check`` on each of ``examples``, then on ``max_examples`` drawn ones."""

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,  # nothing written to the source tree
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(strategy)
    def property_holds(drawn: T) -> None:
        anyio.from_thread.run(check, drawn)

    for explicit in reversed(examples):
        property_holds = example(explicit)(property_holds)
    await anyio.to_thread.run_sync(property_holds)

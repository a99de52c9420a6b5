"""How a vote reaches PostgreSQL: a transaction of its own, or a batch (group commit).

With ``VOTE_BATCH_MS`` = 0 every vote is one transaction (``store.votes.cast_vote``). Above
0, a vote waits at most that long for others: the votes gathered are committed together by
``store.vote_batch.cast_votes``, at most ``VOTE_BATCH_MAX`` to a transaction and at most
``VOTE_BATCH_CONCURRENCY`` transactions at a time (while they all run, votes keep
gathering, so batches grow with the load instead of queueing behind one another). A vote
that found no company takes the single-vote path.

Promises:
- ``cast`` returns only once the vote is committed (durable), whichever way it went;
- the outcome is the one the single-vote path would give had the batch's votes been cast one
  by one in arrival order (``store/vote_batch.py``);
- a batch that fails is retried vote by vote, each in its own transaction, so one vote that
  cannot be stored fails alone (its caller gets the error) and the others are acknowledged;
- the batch loop runs in the app's task group; when it stops, votes still waiting fail with
  ``VoteWriterStopped`` rather than wait forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import anyio.abc
import asyncpg
import structlog

from realtube_push.config import Settings
from realtube_push.observability import Metrics
from realtube_push.store import vote_batch
from realtube_push.store import votes as vote_store
from realtube_push.store.votes import NewVote, VoteOutcome

log = structlog.get_logger("realtube.votes")


class VoteWriterStopped(RuntimeError):
    """The process is shutting down and the vote was not stored."""


@dataclass(slots=True)
class _Waiting:
    """A vote waiting for its batch, and how it ended."""

    vote: NewVote
    arrived: float
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: VoteOutcome | None = None
    error: BaseException | None = None

    def finish(self, outcome: VoteOutcome | None, error: BaseException | None = None) -> None:
        self.outcome, self.error = outcome, error
        self.done.set()


class VoteWriter:
    """Stores votes for the request handlers; ``run`` must be running when batching is on."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, metrics: Metrics) -> None:
        self._pool = pool
        self._window = settings.vote_batch_ms / 1000
        self._max = settings.vote_batch_max
        self._concurrency = settings.vote_batch_concurrency
        self._confidence = settings.full_confidence_weight
        self._metrics = metrics
        self._waiting: list[_Waiting] = []
        self._arrived = anyio.Event()
        self._full = anyio.Event()
        self._running = False

    @property
    def batching(self) -> bool:
        """Whether votes are batched (``VOTE_BATCH_MS`` > 0)."""
        return self._window > 0

    async def cast(self, vote: NewVote) -> VoteOutcome:
        """Store the vote (alone or in a batch); returns once it is committed."""
        if not self.batching:
            return await self._cast_one(vote)
        if not self._running:
            raise VoteWriterStopped("the vote writer is not running")
        waiting = _Waiting(vote, anyio.current_time())
        self._waiting.append(waiting)
        self._arrived.set()
        if len(self._waiting) >= self._max:
            self._full.set()
        await waiting.done.wait()
        if waiting.error is not None:
            raise waiting.error
        assert waiting.outcome is not None
        return waiting.outcome

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Commit the votes in batches until cancelled: a batch leaves when it is full or its
        oldest vote has waited ``VOTE_BATCH_MS``, and a transaction slot is free. Returns at
        once when batching is off."""
        if not self.batching:
            task_status.started()
            return
        self._running = True
        slots = anyio.Semaphore(self._concurrency)
        try:
            async with anyio.create_task_group() as tg:
                task_status.started()
                while True:
                    await self._arrived.wait()
                    wait = self._waiting[0].arrived + self._window - anyio.current_time()
                    with anyio.move_on_after(max(wait, 0.0)):
                        await self._full.wait()
                    await slots.acquire()
                    batch = self._waiting[: self._max]
                    del self._waiting[: self._max]
                    self._arrived, self._full = anyio.Event(), anyio.Event()
                    if self._waiting:
                        self._arrived.set()
                        if len(self._waiting) >= self._max:
                            self._full.set()
                    tg.start_soon(self._commit, batch, slots)
        finally:
            self._running = False
            for waiting in self._waiting:
                waiting.finish(None, VoteWriterStopped("the server is shutting down"))
            self._waiting.clear()

    async def _commit(self, batch: Sequence[_Waiting], slots: anyio.Semaphore) -> None:
        try:
            self._metrics.vote_batch_size.observe(len(batch))
            if len(batch) == 1:  # nobody came along: the single-vote path, a round trip fewer
                await self._one_by_one(batch)
                return
            try:
                async with self._pool.acquire() as conn:
                    outcomes = await vote_batch.cast_votes(
                        conn, [w.vote for w in batch], full_confidence_weight=self._confidence
                    )
            except Exception as exc:  # whatever it was, each vote gets a chance of its own
                log.warning("vote_batch_failed", votes=len(batch), error=type(exc).__name__)
                self._metrics.vote_batches_retried.inc()
                await self._one_by_one(batch)
            else:
                for waiting, outcome in zip(batch, outcomes, strict=True):
                    waiting.finish(outcome)
        finally:
            slots.release()
            for waiting in batch:  # cancelled mid-commit: nobody may wait forever
                if not waiting.done.is_set():
                    waiting.finish(None, VoteWriterStopped("the server is shutting down"))

    async def _one_by_one(self, batch: Sequence[_Waiting]) -> None:
        """Each vote in a transaction of its own; a failure is that vote's alone."""
        for waiting in batch:
            try:
                waiting.finish(await self._cast_one(waiting.vote))
            except Exception as exc:  # answered to this vote's caller
                waiting.finish(None, exc)

    async def _cast_one(self, vote: NewVote) -> VoteOutcome:
        async with self._pool.acquire() as conn:
            return await vote_store.cast_vote(conn, vote, full_confidence_weight=self._confidence)

"""The client's local copy of the synced dataset, and the cursor that says how complete it is.

Promises:

- the cache holds exactly the state after applying the sync log up to ``cursor.seq`` (of
  ``cursor.epoch``), restricted to the subscription: every video of the subscribed buckets
  (all videos when ``buckets`` is None) and every channel (unless ``channels`` is False);
  entries have the shape of ``GET /api/sync/full`` items (no ``seq``, no ``action``);
- a frame or page is applied whole or not at all: it is validated before anything changes,
  and a failed validation raises ``ResyncRequired`` (or a subclass) with the cache untouched;
- contiguity is checked, never assumed. A ``deltas`` frame must start at ``cursor.seq + 1``;
  a hole (``from`` beyond that) raises ``CursorGap``, because the missing seqs may hold
  changes that no later frame repeats. Example: cursor 10, frame ``from`` 12: seq 11 might
  have removed video X; applying 12.. would keep X cached forever, so the client resyncs.
  An overlap (``from`` <= cursor) is refused too, unless ``resuming`` says the caller knows
  the server may repeat seqs it already applied: then deltas at or below the cursor are
  skipped (they are older than what the cache holds), the rest applied;
- an epoch other than the cursor's raises ``EpochMismatch``: seqs of two epochs are not
  comparable (docs/protocol.md, section 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from realtube_push.client.wire import in_buckets, normalize_buckets

Kind = Literal["video", "channel"]
# each kind with the key of its list in a frame or document
_KIND_KEYS: tuple[tuple[Kind, str], ...] = (("video", "videos"), ("channel", "channels"))

_ID_FIELD: dict[str, str] = {"video": "videoId", "channel": "channelId"}
_WIRE_ONLY = ("seq", "action")


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A position in the sync log: the last ``seq`` applied, in ``epoch``."""

    epoch: str
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.seq}"


@dataclass(frozen=True, slots=True)
class Change:
    """One entry that changed: ``item`` is its new value, None when it left the dataset.

    ``seq`` and ``delta`` (the wire object) are set when the change came from a delta; a full
    sync reports the difference to the previous contents with ``seq`` and ``delta`` None.
    """

    kind: Kind
    id: str
    item: dict[str, Any] | None
    seq: int | None = None
    delta: Mapping[str, Any] | None = None

    @property
    def action(self) -> str:
        """``"update"`` or ``"remove"``."""
        return "remove" if self.item is None else "update"


class ResyncRequired(Exception):
    """The cache cannot follow on from this input: do a full sync (``reason`` says why)."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


class NoCursor(ResyncRequired):
    """Deltas arrived before any full sync: there is nothing to apply them to."""

    def __init__(self) -> None:
        super().__init__("no_cursor", "no cursor yet: full-sync first")


class EpochMismatch(ResyncRequired):
    """The input belongs to another epoch (the server's log was reset)."""

    def __init__(self, have: str, got: object) -> None:
        super().__init__("epoch", f"epoch {got!r} is not the cursor's {have!r}")
        self.have = have
        self.got = got


class CursorGap(ResyncRequired):
    """The input does not start right after the cursor: ``got`` instead of ``expected``."""

    def __init__(self, expected: int, got: int) -> None:
        kind = "hole" if got > expected else "overlap"
        super().__init__("gap", f"{kind}: expected seq {expected}, input starts at {got}")
        self.expected = expected
        self.got = got


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ResyncRequired("malformed", f"{what} must be a non-negative integer: {value!r}")
    return value


def _entry(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in _WIRE_ONLY}


class LocalCache:
    """Videos by videoId and channels by channelId, plus the cursor they are complete up to.

    ``buckets`` (1-4 hex prefixes of SHA-256(videoId)) limits which videos are kept, so the
    same cache can take a full sync or a REST page (which hold everything) and a filtered
    live stream alike. Not thread-safe; meant to be driven by one task.
    """

    def __init__(self, *, buckets: Iterable[str] | None = None, channels: bool = True) -> None:
        self.buckets: tuple[str, ...] | None = normalize_buckets(buckets)
        self.with_channels = channels
        self.videos: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.cursor: Cursor | None = None

    # -- what the subscription covers -------------------------------------------------------

    def wants(self, kind: str, entity_id: str) -> bool:
        """Whether an entry belongs in this cache."""
        if kind == "video":
            return in_buckets(entity_id, self.buckets)
        return self.with_channels

    def _table(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.videos if kind == "video" else self.channels

    # -- full sync --------------------------------------------------------------------------

    def apply_full(self, doc: Mapping[str, Any]) -> list[Change]:
        """Replace everything with a ``GET /api/sync/full`` document; cursor = its cursor.

        Returns the difference to the previous contents (added, changed, removed entries).
        """
        epoch = doc.get("epoch")
        if not isinstance(epoch, str) or not epoch:
            raise ResyncRequired("malformed", "full document without an epoch")
        seq = _int(doc.get("cursor"), "cursor")
        fresh: dict[str, dict[str, dict[str, Any]]] = {"video": {}, "channel": {}}
        for kind, key in _KIND_KEYS:
            items = doc.get(key)
            if not isinstance(items, list):
                raise ResyncRequired("malformed", f"full document without a {key!r} list")
            for item in items:
                entity_id = _entity_id(kind, item)
                if self.wants(kind, entity_id):
                    fresh[kind][entity_id] = _entry(item)
        changes: list[Change] = []
        for kind, _ in _KIND_KEYS:
            old, new = self._table(kind), fresh[kind]
            changes.extend(Change(kind, eid, None) for eid in sorted(old.keys() - new.keys()))
            changes.extend(
                Change(kind, eid, item) for eid, item in new.items() if old.get(eid) != item
            )
        self.videos, self.channels = fresh["video"], fresh["channel"]
        self.cursor = Cursor(epoch, seq)
        return changes

    # -- live frames ------------------------------------------------------------------------

    def apply_deltas_frame(
        self, frame: Mapping[str, Any], *, resuming: bool = False
    ) -> list[Change]:
        """Apply one ``deltas`` frame (WebSocket or SSE); cursor = ``frame["to"]``.

        Raises ``NoCursor``, ``EpochMismatch``, ``CursorGap`` (a hole, or an overlap when not
        ``resuming``) or ``ResyncRequired("malformed")``; the cache is then unchanged.
        """
        cursor = self._require_cursor(frame.get("epoch"))
        first = _int(frame.get("from"), "from")
        last = _int(frame.get("to"), "to")
        if last < first:
            raise ResyncRequired("malformed", f"frame range {first}..{last} is empty")
        expected = cursor.seq + 1
        if first > expected or (first < expected and not resuming):
            raise CursorGap(expected, first)
        deltas = self._validated(frame, low=first, high=last)
        return self._apply(deltas, Cursor(cursor.epoch, max(cursor.seq, last)))

    # -- REST polling -----------------------------------------------------------------------

    def apply_delta_page(
        self, body: Mapping[str, Any], *, after: int | None = None
    ) -> list[Change]:
        """Apply one ``GET /api/sync/delta?cursor=`` page; cursor = ``body["cursor"]``.

        ``after`` is the cursor the page was asked for (default: the cache's own). A page
        asked for an older cursor is fine (what the cache already holds is skipped); one
        asked for a newer cursor would leave a hole and raises ``CursorGap``. A page with
        ``"resync": true`` raises ``ResyncRequired("resync")``.
        """
        if body.get("resync"):
            raise ResyncRequired("resync", "the server asks for a full sync")
        cursor = self._require_cursor(body.get("epoch"))
        asked = cursor.seq if after is None else _int(after, "after")
        if asked > cursor.seq:
            raise CursorGap(cursor.seq + 1, asked + 1)
        last = _int(body.get("cursor"), "cursor")
        if last < asked:
            raise ResyncRequired("malformed", f"page cursor {last} is before {asked}")
        deltas = self._validated(body, low=asked + 1, high=last)
        return self._apply(deltas, Cursor(cursor.epoch, max(cursor.seq, last)))

    # -- helpers ----------------------------------------------------------------------------

    def _require_cursor(self, epoch: object) -> Cursor:
        if self.cursor is None:
            raise NoCursor()
        if epoch != self.cursor.epoch:
            raise EpochMismatch(self.cursor.epoch, epoch)
        return self.cursor

    def _validated(
        self, container: Mapping[str, Any], *, low: int, high: int
    ) -> list[tuple[int, Kind, str, Mapping[str, Any]]]:
        """The container's deltas as (seq, kind, id, delta), in seq order, all checked."""
        out: list[tuple[int, Kind, str, Mapping[str, Any]]] = []
        for kind, key in _KIND_KEYS:
            items = container.get(key, [])
            if not isinstance(items, list):
                raise ResyncRequired("malformed", f"{key!r} is not a list")
            for delta in items:
                entity_id = _entity_id(kind, delta)
                seq = _int(delta.get("seq"), "seq")
                if not low <= seq <= high:
                    raise ResyncRequired("malformed", f"delta seq {seq} outside {low}..{high}")
                if delta.get("action") not in ("update", "remove"):
                    raise ResyncRequired("malformed", f"bad action {delta.get('action')!r}")
                out.append((seq, kind, entity_id, delta))
        out.sort(key=lambda d: d[0])
        return out

    def _apply(
        self, deltas: Sequence[tuple[int, Kind, str, Mapping[str, Any]]], cursor: Cursor
    ) -> list[Change]:
        assert self.cursor is not None
        floor = self.cursor.seq
        changes: list[Change] = []
        for seq, kind, entity_id, delta in deltas:
            if seq <= floor or not self.wants(kind, entity_id):
                continue
            table = self._table(kind)
            if delta["action"] == "remove":
                table.pop(entity_id, None)
                item = None
            else:
                item = table[entity_id] = _entry(delta)
            changes.append(Change(kind, entity_id, item, seq, delta))
        self.cursor = cursor
        return changes

    def snapshot(self) -> dict[str, Any]:
        """The contents in the shape of ``GET /api/sync/full`` (ordered by id), for comparisons."""
        return {
            "videos": [self.videos[k] for k in sorted(self.videos)],
            "channels": [self.channels[k] for k in sorted(self.channels)],
            "cursor": None if self.cursor is None else self.cursor.seq,
            "epoch": None if self.cursor is None else self.cursor.epoch,
        }


def _entity_id(kind: str, item: object) -> str:
    if not isinstance(item, Mapping):
        raise ResyncRequired("malformed", f"a {kind} entry is not a map")
    entity_id = item.get(_ID_FIELD[kind])
    if not isinstance(entity_id, str) or not entity_id:
        raise ResyncRequired("malformed", f"a {kind} entry has no {_ID_FIELD[kind]}")
    return entity_id

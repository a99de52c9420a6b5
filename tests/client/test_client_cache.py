"""The client's cache and cursor, without a server: what it applies, what it refuses."""

from __future__ import annotations

import copy

import pytest

from realtube_push.client import CursorGap, EpochMismatch, LocalCache, NoCursor, ResyncRequired
from realtube_push.client.cache import Cursor
from realtube_push.client.wire import entity_hash

EPOCH = "e1"


def video(video_id: str, score: float = 50.0, **extra: object) -> dict:
    return {
        "videoId": video_id,
        "score": score,
        "categories": {"fully_ai": {"votes": 3, "weightedScore": score}},
        "channelId": None,
        "locked": False,
        "totalVotes": 3,
        "lastUpdated": "2026-02-06T12:00:00Z",
        "action": "update",
        **extra,
    }


def channel(channel_id: str, score: float = 70.0, **extra: object) -> dict:
    return {"channelId": channel_id, "score": score, "autoFlag": False, **extra}


def full(cursor: int, videos: list[dict], channels: list[dict] = (), epoch: str = EPOCH) -> dict:
    return {
        "videos": list(videos),
        "channels": list(channels),
        "cursor": cursor,
        "epoch": epoch,
        "generatedAt": "2026-02-06T12:00:00Z",
    }


def frame(first: int, last: int, videos=(), channels=(), epoch: str = EPOCH) -> dict:
    return {
        "t": "deltas",
        "epoch": epoch,
        "from": first,
        "to": last,
        "videos": list(videos),
        "channels": list(channels),
    }


def d(item: dict, seq: int, action: str = "update") -> dict:
    return {**item, "seq": seq, "action": action}


def synced(cursor: int = 10, videos=(), channel_items=(), **kwargs) -> LocalCache:
    cache = LocalCache(**kwargs)
    cache.apply_full(full(cursor, list(videos), list(channel_items)))
    return cache


def ids_in_bucket(bucket: str, count: int, *, inside: bool = True) -> list[str]:
    """Video ids whose SHA-256 does (or does not) start with ``bucket``."""
    found, n = [], 0
    while len(found) < count:
        candidate = f"vid{n:08d}"
        if entity_hash(candidate).startswith(bucket) == inside:
            found.append(candidate)
        n += 1
    return found


# -- full sync ----------------------------------------------------------------------------------


def test_full_sync_sets_the_cursor_and_stores_entries_without_wire_fields():
    cache = LocalCache()
    changes = cache.apply_full(full(7, [video("a")], [channel("UCx")]))
    assert cache.cursor == Cursor(EPOCH, 7)
    assert "action" not in cache.videos["a"]
    assert cache.videos["a"]["score"] == 50.0
    assert cache.channels["UCx"]["score"] == 70.0
    assert {(c.kind, c.id, c.action) for c in changes} == {
        ("video", "a", "update"),
        ("channel", "UCx", "update"),
    }


def test_full_sync_reports_only_what_differs_from_the_previous_contents():
    cache = synced(5, [video("a"), video("b"), video("c")])
    changes = cache.apply_full(full(9, [video("a"), video("b", score=80.0), video("d")]))
    assert sorted((c.id, c.action) for c in changes) == [
        ("b", "update"),
        ("c", "remove"),
        ("d", "update"),
    ]
    assert set(cache.videos) == {"a", "b", "d"}


def test_full_sync_keeps_only_videos_of_the_subscribed_buckets_and_every_channel():
    inside, outside = ids_in_bucket("ab", 2), ids_in_bucket("ab", 2, inside=False)
    cache = synced(3, [video(v) for v in inside + outside], [channel("UCx")], buckets=["ab"])
    assert set(cache.videos) == set(inside)
    assert set(cache.channels) == {"UCx"}


def test_full_sync_without_channels_keeps_no_channel():
    cache = synced(3, [video("a")], [channel("UCx")], channels=False)
    assert cache.channels == {}


@pytest.mark.parametrize(
    "doc",
    [
        {"videos": [], "channels": [], "cursor": 1},
        {"videos": [], "channels": [], "cursor": -1, "epoch": EPOCH},
        {"videos": {}, "channels": [], "cursor": 1, "epoch": EPOCH},
        {"videos": [{"score": 1}], "channels": [], "cursor": 1, "epoch": EPOCH},
    ],
)
def test_malformed_full_document_is_refused_and_changes_nothing(doc):
    cache = synced(4, [video("a")])
    before = copy.deepcopy(cache.snapshot())
    with pytest.raises(ResyncRequired):
        cache.apply_full(doc)
    assert cache.snapshot() == before


# -- live frames --------------------------------------------------------------------------------


def test_contiguous_frame_is_applied_and_moves_the_cursor_to_its_end():
    cache = synced(10, [video("a")])
    changes = cache.apply_deltas_frame(
        frame(11, 14, [d(video("a", 90.0), 12), d(video("b"), 14)], [d(channel("UCx"), 13)])
    )
    assert cache.cursor == Cursor(EPOCH, 14)
    assert cache.videos["a"]["score"] == 90.0
    assert "seq" not in cache.videos["a"]
    assert set(cache.videos) == {"a", "b"}
    assert [(c.seq, c.kind, c.id) for c in changes] == [
        (12, "video", "a"),
        (13, "channel", "UCx"),
        (14, "video", "b"),
    ]


def test_remove_delta_deletes_the_entry_and_reports_none():
    cache = synced(10, [video("a")], [channel("UCx")])
    changes = cache.apply_deltas_frame(
        frame(11, 12, [d(video("a", 0.0), 11, "remove")], [d(channel("UCx", 0.0), 12, "remove")])
    )
    assert cache.videos == {}
    assert cache.channels == {}
    assert [(c.id, c.item, c.action) for c in changes] == [
        ("a", None, "remove"),
        ("UCx", None, "remove"),
    ]


def test_empty_frame_only_moves_the_cursor():
    cache = synced(10, [video("a")])
    assert cache.apply_deltas_frame(frame(11, 20)) == []
    assert cache.cursor == Cursor(EPOCH, 20)
    assert set(cache.videos) == {"a"}


def test_hole_raises_cursor_gap_and_leaves_the_cache_untouched():
    cache = synced(10, [video("a")])
    before = copy.deepcopy(cache.snapshot())
    with pytest.raises(CursorGap) as caught:
        cache.apply_deltas_frame(frame(12, 13, [d(video("a", 0.0), 12, "remove")]))
    assert (caught.value.expected, caught.value.got) == (11, 12)
    assert caught.value.reason == "gap"
    assert cache.snapshot() == before


def test_overlap_is_refused_on_a_live_stream():
    cache = synced(10, [video("a")])
    with pytest.raises(CursorGap):
        cache.apply_deltas_frame(frame(9, 12, [d(video("b"), 12)]))
    assert cache.cursor == Cursor(EPOCH, 10)


def test_overlap_when_resuming_skips_what_the_cache_already_holds():
    cache = synced(10, [video("a", 80.0)])
    changes = cache.apply_deltas_frame(
        frame(8, 12, [d(video("a", 10.0), 9), d(video("b"), 12)]), resuming=True
    )
    assert cache.videos["a"]["score"] == 80.0  # seq 9 is older than what the cache holds
    assert [c.id for c in changes] == ["b"]
    assert cache.cursor == Cursor(EPOCH, 12)


def test_a_frame_wholly_behind_the_cursor_changes_nothing_when_resuming():
    cache = synced(10, [video("a")])
    assert cache.apply_deltas_frame(frame(5, 8, [d(video("a", 1.0), 6)]), resuming=True) == []
    assert cache.cursor == Cursor(EPOCH, 10)
    assert cache.videos["a"]["score"] == 50.0


def test_a_hole_is_refused_even_when_resuming():
    cache = synced(10)
    with pytest.raises(CursorGap):
        cache.apply_deltas_frame(frame(12, 12), resuming=True)


def test_frame_of_another_epoch_raises_epoch_mismatch():
    cache = synced(10)
    with pytest.raises(EpochMismatch) as caught:
        cache.apply_deltas_frame(frame(11, 11, epoch="e2"))
    assert caught.value.reason == "epoch"
    assert cache.cursor == Cursor(EPOCH, 10)


def test_frame_before_any_full_sync_raises_no_cursor():
    with pytest.raises(NoCursor):
        LocalCache().apply_deltas_frame(frame(1, 1))


@pytest.mark.parametrize(
    "bad",
    [
        frame(11, 12, [d(video("b"), 13)]),  # delta outside the frame's range
        frame(11, 12, [{**d(video("b"), 12), "action": "upsert"}]),
        frame(11, 12, [{"seq": 12, "action": "update"}]),  # no videoId
        frame(12, 11),  # empty range
        {**frame(11, 12), "to": "12"},
    ],
)
def test_malformed_frame_is_refused_whole(bad):
    cache = synced(10, [video("a")])
    before = copy.deepcopy(cache.snapshot())
    # a good delta in the same frame must not be applied either
    bad = {**bad, "videos": [d(video("a", 1.0), 11), *bad["videos"]]}
    with pytest.raises(ResyncRequired):
        cache.apply_deltas_frame(bad)
    assert cache.snapshot() == before


def test_bucketed_cache_ignores_other_buckets_but_its_cursor_follows_every_frame():
    inside, outside = ids_in_bucket("c", 1)[0], ids_in_bucket("c", 1, inside=False)[0]
    cache = synced(10, buckets=["c"])
    changes = cache.apply_deltas_frame(frame(11, 12, [d(video(inside), 11), d(video(outside), 12)]))
    assert set(cache.videos) == {inside}
    assert [c.id for c in changes] == [inside]
    assert cache.cursor == Cursor(EPOCH, 12)


# -- REST pages ---------------------------------------------------------------------------------


def page(cursor: int, videos=(), channels=(), *, more: bool = False, **extra) -> dict:
    return {
        "videos": list(videos),
        "channels": list(channels),
        "cursor": cursor,
        "epoch": EPOCH,
        "hasMore": more,
        "syncTimestamp": "2026-02-06T12:00:00Z",
        **extra,
    }


def test_delta_page_is_applied_and_moves_the_cursor_to_the_pages():
    cache = synced(10, [video("a")])
    changes = cache.apply_delta_page(
        page(15, [d(video("a", 0.0), 12, "remove"), d(video("b"), 15)])
    )
    assert set(cache.videos) == {"b"}
    assert cache.cursor == Cursor(EPOCH, 15)
    assert [(c.id, c.action) for c in changes] == [("a", "remove"), ("b", "update")]


def test_delta_page_asked_for_an_older_cursor_skips_what_is_held():
    cache = synced(10, [video("a", 80.0)])
    cache.apply_delta_page(page(12, [d(video("a", 5.0), 9), d(video("b"), 12)]), after=8)
    assert cache.videos["a"]["score"] == 80.0
    assert cache.cursor == Cursor(EPOCH, 12)


def test_delta_page_asked_for_a_newer_cursor_is_a_gap():
    cache = synced(10)
    with pytest.raises(CursorGap):
        cache.apply_delta_page(page(15), after=12)


def test_delta_page_saying_resync_raises_and_changes_nothing():
    cache = synced(10, [video("a")])
    with pytest.raises(ResyncRequired) as caught:
        cache.apply_delta_page(page(99, resync=True))
    assert caught.value.reason == "resync"
    assert cache.cursor == Cursor(EPOCH, 10)


def test_delta_page_of_another_epoch_raises_epoch_mismatch():
    cache = synced(10)
    with pytest.raises(EpochMismatch):
        cache.apply_delta_page({**page(11), "epoch": "e2"})


def test_page_then_frames_continue_from_the_same_cursor():
    cache = synced(10)
    cache.apply_delta_page(page(12, [d(video("a"), 12)]))
    cache.apply_deltas_frame(frame(13, 13, [d(video("b"), 13)]))
    assert set(cache.videos) == {"a", "b"}
    assert cache.cursor == Cursor(EPOCH, 13)

"""The admin API the dashboard uses: sessions, moderation, reads and the live topic.

Plain HTTP against real servers (no browser needed); the dashboard's own browser tests are in
``test_dashboard.py``.
"""

from __future__ import annotations

import httpx
import pytest

from tests.support import ids, pg
from tests.support.blocking import SERVER_ENV, subscribed, video, vote, wait_until
from tests.support.shared import run_async

TOKEN = "test-admin-token-0123456789"
ADMIN_ENV = {**SERVER_ENV, "ADMIN_TOKEN": TOKEN}
# one server for the module (tests use fresh ids); tests needing their own settings or an
# empty database start one with ``servers``
pytestmark = pytest.mark.server_env(**ADMIN_ENV)

PROTECTED = [
    ("GET", "/api/admin/session"),
    ("GET", "/api/admin/audit"),
    ("GET", "/api/admin/top"),
    ("GET", "/api/admin/auto-flagged"),
    ("GET", "/api/admin/stats"),
    ("GET", "/api/live/admin"),
    ("POST", "/api/admin/logout"),
    ("POST", "/api/admin/videos/dQw4w9WgXcQ/lock"),
    ("POST", "/api/admin/channels/UCabc/lock"),
    ("POST", "/api/admin/users/abc123/shadowban"),
]


@pytest.fixture
def admin(server):
    """An HTTP client holding an admin session."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        r = client.post("/api/admin/login", json={"token": TOKEN})
        assert r.status_code == 200, r.text
        yield client


@pytest.fixture
def login():
    """Log in to any server: ``login(server)`` -> an admin HTTP client (closed after)."""
    clients: list[httpx.Client] = []

    def log_in(server) -> httpx.Client:
        client = httpx.Client(base_url=server.url, timeout=10)
        clients.append(client)
        assert client.post("/api/admin/login", json={"token": TOKEN}).status_code == 200
        return client

    yield log_in
    for client in clients:
        client.close()


def act(admin, kind: str, target: str, action: str, reason: str = "test") -> dict:
    r = admin.post(f"/api/admin/{kind}/{target}/{action}", json={"reason": reason})
    assert r.status_code == 200, r.text
    return r.json()


def scored(server, video_id: str) -> dict:
    """The video once the score worker has given it a score above 0."""
    return wait_until(
        lambda: (v := video(server.url, video_id)) is not None and v["score"] > 0 and v,
        what=f"{video_id} scored",
    )


def score_queue_drained(server) -> None:
    """Wait until the score worker has recalculated everything queued."""
    wait_until(
        lambda: run_async(
            pg.fetchval, server.env["DATABASE_URL"], "SELECT count(*) = 0 FROM score_queue"
        ),
        what="score queue drained",
    )


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[p for _, p in PROTECTED])
def test_admin_routes_answer_401_without_a_session(server, method, path):
    r = httpx.request(method, f"{server.url}{path}", json={"reason": "x"}, timeout=10)

    assert r.status_code == 401
    assert r.json()["error"]["code"] == "UNAUTHORIZED"


def test_a_wrong_token_is_401_and_sets_no_cookie(server):
    r = httpx.post(f"{server.url}/api/admin/login", json={"token": "nope"}, timeout=10)

    assert r.status_code == 401
    assert r.json()["error"]["code"] == "UNAUTHORIZED"
    assert "set-cookie" not in r.headers


def test_without_admin_token_configured_nobody_logs_in(servers):
    server = servers.start()  # ADMIN_TOKEN unset (serve does not invent one; dev does)

    r = httpx.post(f"{server.url}/api/admin/login", json={"token": ""}, timeout=10)

    assert r.status_code in (400, 401)
    r = httpx.post(f"{server.url}/api/admin/login", json={"token": "anything"}, timeout=10)
    assert r.status_code == 401


def test_login_sets_an_httponly_samesite_strict_session_cookie(server):
    r = httpx.post(f"{server.url}/api/admin/login", json={"token": TOKEN}, timeout=10)

    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert cookie.startswith("rt_admin=v1.")
    assert {"httponly", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in attributes  # plain http here


def test_the_cookie_is_secure_behind_an_https_proxy(servers):
    server = servers.start(**ADMIN_ENV, TRUSTED_PROXIES="127.0.0.1/32")

    r = httpx.post(
        f"{server.url}/api/admin/login",
        json={"token": TOKEN},
        headers={"X-Forwarded-Proto": "https"},
        timeout=10,
    )

    assert "secure" in {p.strip().lower() for p in r.headers["set-cookie"].split(";")}


def test_a_tampered_cookie_is_refused(server, admin):
    value = admin.cookies["rt_admin"]
    version, sid, expires, signature = value.split(".")
    forged = [
        f"{version}.{sid}.{int(expires) + 3600}.{signature}",  # extended
        f"{version}.{'0' * 32}.{expires}.{signature}",  # another session
        f"{version}.{sid}.{expires}.{'0' * 64}",  # made-up signature
        "admin",
    ]
    for cookie in forged:
        r = httpx.get(f"{server.url}/api/admin/session", cookies={"rt_admin": cookie}, timeout=10)
        assert r.status_code == 401, cookie


def test_logout_ends_the_session_even_for_a_copied_cookie(server, admin):
    copied = admin.cookies["rt_admin"]
    assert admin.get("/api/admin/session").status_code == 200

    assert admin.post("/api/admin/logout").status_code == 200

    r = httpx.get(f"{server.url}/api/admin/session", cookies={"rt_admin": copied}, timeout=10)
    assert r.status_code == 401


def test_a_cross_origin_admin_action_is_refused(server, admin):
    r = admin.post(
        "/api/admin/videos/dQw4w9WgXcQ/lock",
        json={"reason": "csrf"},
        headers={"Origin": "https://evil.example"},
    )

    assert r.status_code == 403


def test_an_action_needs_a_reason(server, admin):
    video_id = ids.video_id()
    vote(server.url, video_id)
    for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}):
        r = admin.post(f"/api/admin/videos/{video_id}/lock", json=body)
        assert r.status_code == 400, body
        assert r.json()["error"]["code"] == "INVALID_FIELD"


@pytest.mark.parametrize(
    "path",
    [
        "/api/admin/videos/unknownVid1/lock",
        "/api/admin/channels/UCnobody/lock",
        f"/api/admin/users/{'ab' * 32}/shadowban",
        "/api/admin/videos/dQw4w9WgXcQ/explode",
    ],
)
def test_unknown_targets_and_actions_are_404(server, admin, path):
    r = admin.post(path, json={"reason": "test"})

    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"


def test_locking_a_video_keeps_its_score_and_live_clients_see_locked(server, admin):
    video_id = ids.video_id()
    vote(server.url, video_id)
    before = scored(server, video_id)

    with subscribed(server.url) as live:
        body = act(admin, "videos", video_id, "lock", "brigading")
        delta = live.wait_for(lambda d: d["videoId"] == video_id and d["locked"], timeout=5)

    assert delta["score"] == before["score"]
    assert delta["action"] == "update"
    assert body["action"]["action"] == "lock"
    assert body["action"]["reason"] == "brigading"
    assert video(server.url, video_id)["locked"] is True
    rows = run_async(
        pg.fetch,
        server.env["DATABASE_URL"],
        "SELECT actor, action, target_type, target_id, reason FROM vip_actions"
        " WHERE target_id = $1",
        video_id,
    )
    assert [tuple(r) for r in rows] == [("admin", "lock", "video", video_id, "brigading")]


def test_a_locked_video_keeps_its_score_until_unlocked(server, admin):
    video_id = ids.video_id()
    vote(server.url, video_id)
    locked_score = scored(server, video_id)["score"]
    act(admin, "videos", video_id, "lock")
    wait_until(lambda: video(server.url, video_id)["locked"])
    for _ in range(3):
        vote(server.url, video_id)
    wait_until(lambda: video(server.url, video_id)["totalVotes"] == 4)
    score_queue_drained(server)  # the new votes were recalculated, and the lock held
    assert video(server.url, video_id)["score"] == locked_score

    act(admin, "videos", video_id, "unlock")

    unlocked = wait_until(
        lambda: (v := video(server.url, video_id))["score"] > locked_score and v,
        what="score recomputed",
    )
    assert unlocked["locked"] is False


def test_hiding_a_video_removes_it_for_clients_and_unhiding_brings_it_back(server, admin):
    video_id = ids.video_id()
    vote(server.url, video_id)
    scored(server, video_id)

    with subscribed(server.url) as live:
        act(admin, "videos", video_id, "hide", "spam")
        live.wait_for(lambda d: d["videoId"] == video_id and d["action"] == "remove", timeout=5)
        assert video(server.url, video_id) is None
        act(admin, "videos", video_id, "unhide", "appeal")
        live.wait_for(lambda d: d["videoId"] == video_id and d["action"] == "update", timeout=5)

    assert video(server.url, video_id) is not None


def test_locking_a_channel_logs_its_delta_and_stops_auto_flag(server, admin):
    channel_id = ids.channel_id()
    vote(server.url, ids.video_id(), channelId=channel_id)
    run_async(
        pg.execute,
        server.env["DATABASE_URL"],
        "UPDATE channels SET score = 85, flagged_videos = 25, total_videos = 30,"
        " auto_flag_new = true WHERE channel_id = $1",
        channel_id,
    )

    with subscribed(server.url) as live:
        act(admin, "channels", channel_id, "lock", "verified human creator")
        delta = live.wait_for(lambda d: d["channelId"] == channel_id, kind="channel", timeout=5)

    assert delta["locked"] is True
    assert delta["autoFlag"] is False
    assert delta["score"] == 85
    channel = httpx.get(f"{server.url}/api/channels/{channel_id}", timeout=10).json()
    assert (channel["locked"], channel["autoFlag"]) == (True, False)


def test_a_shadowban_recomputes_the_users_videos_without_their_votes(server, admin):
    user = ids.user_id()
    video_id = ids.video_id()
    vote(server.url, video_id, user_id=user)
    scored(server, video_id)

    with subscribed(server.url) as live:
        body = act(admin, "users", user, "shadowban", "sockpuppet")
        live.wait_for(lambda d: d["videoId"] == video_id and d["action"] == "remove", timeout=5)
        act(admin, "users", user, "unban", "mistake")
        live.wait_for(lambda d: d["videoId"] == video_id and d["action"] == "update", timeout=5)

    assert body["requeuedVideos"] == 1


def test_audit_lists_recent_actions_newest_first(server, admin):
    video_id = ids.video_id()
    vote(server.url, video_id)
    act(admin, "videos", video_id, "lock", "first")
    act(admin, "videos", video_id, "unlock", "second")

    actions = admin.get("/api/admin/audit", params={"limit": 500}).json()["actions"]
    actions = [a for a in actions if a["targetId"] == video_id]

    assert [(a["action"], a["reason"]) for a in actions] == [
        ("unlock", "second"),
        ("lock", "first"),
    ]
    assert actions[0]["actor"] == "admin"
    assert actions[0]["targetType"] == "video"
    assert actions[0]["createdAt"].endswith("Z")


def test_top_lists_the_most_flagged_videos_and_channels(servers, login):
    server = servers.start(**ADMIN_ENV)  # an empty database: nothing else ranks
    admin = login(server)
    videos = [ids.video_id() for _ in range(3)]
    for n, video_id in enumerate(videos):
        for _ in range(n + 1):
            vote(server.url, video_id)
    wait_until(lambda: all(video(server.url, v)["score"] > 0 for v in videos))
    wait_until(lambda: video(server.url, videos[2])["totalVotes"] == 3)
    score_queue_drained(server)

    top = admin.get("/api/admin/top", params={"limit": 2}).json()

    assert [v["videoId"] for v in top["videos"]] == [videos[2], videos[1]]
    assert top["channels"] == []


def test_auto_flagged_lists_channels_that_newly_auto_flag(servers, login):
    server = servers.start(**ADMIN_ENV)
    admin = login(server)
    flagged, plain = ids.channel_id(), ids.channel_id()
    for channel_id in (flagged, plain):
        vote(server.url, ids.video_id(), channelId=channel_id)
    run_async(
        pg.execute,
        server.env["DATABASE_URL"],
        "UPDATE channels SET auto_flag_new = (channel_id = $1), score = 90, locked = true",
        flagged,
    )  # locked, so the channel worker keeps these made-up aggregates

    listed = admin.get("/api/admin/auto-flagged").json()["channels"]

    assert [c["channelId"] for c in listed] == [flagged]


def test_stats_aggregate_every_instance(servers, login):
    server, other = servers.start(**ADMIN_ENV), servers.start(**ADMIN_ENV)
    admin = login(server)
    with subscribed(other.url):
        vote(server.url, ids.video_id())

        stats = wait_until(
            lambda: (
                (s := admin.get("/api/admin/stats").json())["connections"]["sse"] == 1
                and len(s["instances"]) == 2
                and s["votes"] >= 1
                and s
            ),
            what="both instances in the stats",
        )

    assert stats["t"] == "stats"
    assert stats["dbPool"]["size"] >= 2
    assert stats["scoreWorker"]["queueDepth"] is not None
    assert {"p50Ms", "p99Ms", "samples"} <= set(stats["fanoutLag"])


def test_the_admin_live_topic_streams_stats_and_deltas(server, admin):
    video_id = ids.video_id()
    events: list[tuple[str, str]] = []
    with admin.stream("GET", "/api/live/admin", timeout=httpx.Timeout(10, read=10)) as response:
        assert response.status_code == 200
        event = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((event, line))
                if event == "welcome":
                    vote(server.url, video_id)
                if event == "deltas" and video_id in line:
                    break

    kinds = [e for e, _ in events]
    assert kinds[0] == "welcome"
    assert "stats" in kinds


@pytest.mark.parametrize(
    "path",
    [
        "/client/realtube-live.js",
        "/client/vendor/msgpack-3.1.3.mjs",
        "/admin/app.js",
        "/admin/vendor/uPlot-1.6.32.esm.js",
    ],
)
def test_the_client_and_dashboard_modules_are_served_as_javascript(server, path):
    r = httpx.get(f"{server.url}{path}", timeout=10)

    assert r.status_code == 200
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_the_dashboard_page_forbids_framing_and_foreign_code(server):
    r = httpx.get(f"{server.url}/admin", timeout=10, follow_redirects=True)

    assert r.status_code == 200
    assert str(r.url).endswith("/admin/")
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp


@pytest.mark.parametrize(
    "path", ["/client/..%2F..%2Fpyproject.toml", "/admin/..%2Frealtube_push%2Fconfig.py"]
)
def test_nothing_outside_the_static_folders_is_served(server, path):
    assert httpx.get(f"{server.url}{path}", timeout=10).status_code == 404

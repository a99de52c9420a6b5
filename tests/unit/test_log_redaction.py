"""The privacy rule every log line passes (realtube_push/logs.py), value by value."""

from __future__ import annotations

import pytest

from realtube_push.logs import Redactor, address_hash

SALT = "unit-salt"
USER = "ab" * 32


def redact(**event: object) -> dict[str, object]:
    return Redactor(SALT)(None, "info", dict(event))


def test_a_full_user_id_is_cut_to_its_first_8_characters_wherever_it_appears():
    event = redact(
        target_id=USER,
        path=f"/api/users/{USER}/x",
        exception=f"Key (user_id)=({USER}) is not present",
        nested={"ids": [USER, "short"]},
    )

    assert event["target_id"] == "abababab…"
    assert event["path"] == "/api/users/abababab…/x"
    assert event["exception"] == "Key (user_id)=(abababab…) is not present"
    assert event["nested"] == {"ids": ["abababab…", "short"]}


def test_the_services_own_32_hex_hashes_stay_whole():
    ip_hash, epoch = "0123456789abcdef" * 2, "fedcba9876543210" * 2

    assert redact(ip_hash=ip_hash, epoch=epoch) == {"ip_hash": ip_hash, "epoch": epoch}


@pytest.mark.parametrize(
    "address",
    ["203.0.113.9", "127.0.0.1", "2001:db8::7", "::1", "::ffff:198.51.100.4", "fe80::1%eth0"],
)
def test_a_client_address_becomes_its_salted_hash(address):
    event = redact(event=f"peer ('{address}', 51234) reset", peer=address)

    expected = "ip#" + address_hash(SALT.encode(), address)
    assert event["event"] == f"peer ('{expected}', 51234) reset"
    assert event["peer"] == expected


@pytest.mark.parametrize(
    "text",
    ["at 23:34:13 today", "2026-11-29T23:34:13.223480Z", "version 1.2.3", "a::b::c", "1.2.3.4.5"],
)
def test_times_versions_and_other_lookalikes_are_left_alone(text):
    assert redact(event=text)["event"] == text


def test_the_servers_own_listening_address_is_the_one_exception():
    event = redact(listen="http://127.0.0.1:8080", event="listening")

    assert event["listen"] == "http://127.0.0.1:8080"


def test_numbers_and_flags_pass_through_untouched():
    assert redact(status=200, duration_ms=1.5, ok=True, nothing=None) == {
        "status": 200,
        "duration_ms": 1.5,
        "ok": True,
        "nothing": None,
    }

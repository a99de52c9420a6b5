"""Identifier rules (docs/api.md "Identifiers") and the hash-prefix lookup range."""

import hashlib
import re
from typing import Annotated

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import StringConstraints, TypeAdapter, ValidationError

from realtube_push.domain.ids import (
    BUCKET_PATTERN,
    BUCKET_RE,
    CHANNEL_ID_PATTERN,
    CHANNEL_ID_RE,
    HASH_PREFIX_PATTERN,
    HASH_PREFIX_RE,
    USER_ID_PATTERN,
    USER_ID_RE,
    VIDEO_ID_PATTERN,
    VIDEO_ID_RE,
    entity_hash,
    is_channel_id,
    is_user_id,
    is_video_id,
    parse_hash_prefix,
    prefix_range,
)

PATTERN_PAIRS = [
    pytest.param(VIDEO_ID_PATTERN, VIDEO_ID_RE, "dQw4w9WgXcQ", id="video"),
    pytest.param(CHANNEL_ID_PATTERN, CHANNEL_ID_RE, "UCuAXFkgsw1L7xaCfnd5JJOw", id="channel"),
    pytest.param(USER_ID_PATTERN, USER_ID_RE, "9f86d081884c7d65", id="user"),
    pytest.param(HASH_PREFIX_PATTERN, HASH_PREFIX_RE, "5f6B", id="hash-prefix"),
    pytest.param(BUCKET_PATTERN, BUCKET_RE, "5f6b", id="bucket"),
]

HEX_DIGITS = "0123456789abcdef"
hex_text = st.text(alphabet=HEX_DIGITS, max_size=64)
id_like_text = st.text(
    alphabet=st.sampled_from("aZ09_-fF\n .é"),
    max_size=70,
)


@pytest.mark.parametrize(
    "value",
    ["dQw4w9WgXcQ", "a", "A" * 16, "_-_-", "0123456789"],
)
def test_youtube_style_video_id_is_accepted(value: str) -> None:
    assert is_video_id(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("A" * 17, id="17-chars"),
        pytest.param("dQw4w9WgXcQ\n", id="trailing-newline"),
        pytest.param("dQw4 w9WgXcQ", id="space"),
        pytest.param("dQw4w9WgXc!", id="punctuation"),
        pytest.param("vidéo", id="non-ascii"),
        pytest.param(b"dQw4w9WgXcQ", id="bytes"),
        pytest.param(12345, id="int"),
        pytest.param(None, id="none"),
    ],
)
def test_malformed_video_id_is_rejected(value: object) -> None:
    assert not is_video_id(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("UCuAXFkgsw1L7xaCfnd5JJOw", True, id="youtube-channel"),
        pytest.param("c" * 32, True, id="32-chars"),
        pytest.param("c" * 33, False, id="33-chars"),
        pytest.param("", False, id="empty"),
        pytest.param("UCabc\n", False, id="trailing-newline"),
        pytest.param("UC/abc", False, id="slash"),
        pytest.param(["UCabc"], False, id="list"),
    ],
)
def test_channel_id_is_checked_against_api_rule(value: object, expected: bool) -> None:
    assert is_channel_id(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("f" * 64, True, id="sha256-hex"),
        pytest.param("0", True, id="one-digit"),
        pytest.param("f" * 65, False, id="65-chars"),
        pytest.param("ABCDEF", False, id="uppercase"),
        pytest.param("abcxyz", False, id="not-hex"),
        pytest.param("abc\n", False, id="trailing-newline"),
        pytest.param("", False, id="empty"),
        pytest.param(0xABC, False, id="int"),
    ],
)
def test_user_id_must_be_lowercase_hex(value: object, expected: bool) -> None:
    assert is_user_id(value) is expected


@pytest.mark.parametrize(("pattern", "compiled", "valid"), PATTERN_PAIRS)
def test_compiled_pattern_rejects_trailing_newline(
    pattern: str, compiled: re.Pattern[str], valid: str
) -> None:
    assert compiled.match(valid)
    assert re.match(pattern, valid + "\n"), "Python's $ is the trap being avoided"
    assert compiled.match(valid + "\n") is None


@pytest.mark.parametrize(("pattern", "compiled", "valid"), PATTERN_PAIRS)
@given(text=id_like_text)
def test_pydantic_and_python_checks_accept_the_same_strings(
    pattern: str, compiled: re.Pattern[str], valid: str, text: str
) -> None:
    adapter = TypeAdapter(Annotated[str, StringConstraints(pattern=pattern)])
    try:
        adapter.validate_python(text)
    except ValidationError:
        pydantic_accepts = False
    else:
        pydantic_accepts = True
    assert pydantic_accepts == (compiled.fullmatch(text) is not None)
    assert adapter.validate_python(valid) == valid


@pytest.mark.parametrize(
    ("entity_id", "expected"),
    [
        pytest.param(
            "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", id="nist"
        ),
        pytest.param(
            "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", id="empty"
        ),
        pytest.param("é", hashlib.sha256(b"\xc3\xa9").hexdigest(), id="utf-8"),
    ],
)
def test_entity_hash_is_lowercase_hex_sha256_of_utf8(entity_id: str, expected: str) -> None:
    assert entity_hash(entity_id) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("5f6b", "5f6b", id="4-lowercase"),
        pytest.param("5F6B0B4E", "5f6b0b4e", id="8-uppercase"),
        pytest.param("0aBc1", "0abc1", id="mixed-case"),
    ],
)
def test_valid_hash_prefix_is_lowercased(value: str, expected: str) -> None:
    assert parse_hash_prefix(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("5f6", id="3-chars"),
        pytest.param("5f6b0b4e2", id="9-chars"),
        pytest.param("5f6g", id="not-hex"),
        pytest.param("5f 6b", id="space"),
        pytest.param("5f6b\n", id="trailing-newline"),
        pytest.param("", id="empty"),
    ],
)
def test_invalid_hash_prefix_is_refused_with_reason(value: str) -> None:
    with pytest.raises(ValueError, match="4 to 8 hexadecimal characters"):
        parse_hash_prefix(value)


def test_prefix_range_ends_just_past_the_last_hex_digit() -> None:
    assert prefix_range("5f6b") == ("5f6b", "5f6bg")


@given(hash_=hex_text, prefix=st.text(alphabet=HEX_DIGITS, max_size=8))
def test_hash_is_in_prefix_range_exactly_when_it_starts_with_prefix(
    hash_: str, prefix: str
) -> None:
    lo, hi = prefix_range(prefix)
    assert (lo <= hash_ < hi) == hash_.startswith(prefix)


@given(entity_id=st.text(max_size=20), length=st.integers(min_value=4, max_value=8))
def test_video_is_found_by_any_prefix_of_its_hash(entity_id: str, length: int) -> None:
    hash_ = entity_hash(entity_id)
    lo, hi = prefix_range(parse_hash_prefix(hash_[:length].upper()))
    assert lo <= hash_ < hi

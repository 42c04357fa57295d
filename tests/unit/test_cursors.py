"""Cursors: opaque, signed, bound to their query's kind and filters."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.api.cursors import CursorError, decode_cursor, encode_cursor

KEY = b"k" * 32
TTL = 3600
ISSUED = 1_800_000_000
FILTERS = {"since": "2026-11-29T09:00:00.000Z", "until": "2026-11-29T10:00:00.000Z"}
POSITION = {"after": "2026-11-29T09:30:00.000Z#int-1#000000000003#ev-3"}


def _encode(position: dict = POSITION, filters: dict = FILTERS, kind: str = "window") -> str:
    return encode_cursor(position, kind=kind, filters=filters, key=KEY, issued_at=ISSUED)


def _decode(
    cursor: str,
    filters: dict = FILTERS,
    kind: str = "window",
    key: bytes = KEY,
    now: float = ISSUED + 1,
) -> dict:
    return decode_cursor(cursor, kind=kind, filters=filters, key=key, ttl_seconds=TTL, now=now)


def test_round_trip() -> None:
    assert _decode(_encode()) == POSITION


def test_cursor_is_url_safe_text() -> None:
    cursor = _encode({"after": "ä/+?&=#" * 5})
    assert all(c.isalnum() or c in "-_." for c in cursor)


def test_other_filters_are_refused_with_their_own_message() -> None:
    cursor = _encode()
    for other in (
        {**FILTERS, "until": "2026-11-29T10:00:00.001Z"},
        {**FILTERS, "detail_type": None},  # a filter present but empty still differs
        {"since": FILTERS["since"]},
    ):
        with pytest.raises(CursorError, match="other filters"):
            _decode(cursor, filters=other)


def test_other_kind_of_query_is_refused() -> None:
    with pytest.raises(CursorError, match="another kind of query"):
        _decode(_encode(kind="timeline"), kind="window")


def test_cursor_signed_with_another_key_is_refused() -> None:
    with pytest.raises(CursorError, match="not a cursor issued by this API"):
        _decode(_encode(), key=b"x" * 32)


def test_payload_rewritten_and_left_unsigned_is_refused() -> None:
    """An edit that keeps the JSON valid (moving the position) is caught by the signature."""
    payload, signature = _encode().split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["p"]["after"] = "0000"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(CursorError, match="altered"):
        _decode(f"{forged}.{signature}")


@pytest.mark.parametrize("junk", ["", ".", "a.b.c", "abc", "!!!.###", "x" * 3000, "é.é"])
def test_junk_is_refused(junk: str) -> None:
    with pytest.raises(CursorError):
        _decode(junk)


@given(index=st.integers(min_value=0), replacement=st.sampled_from("AQgw-_x0"))
def test_any_single_character_change_is_refused(index: int, replacement: str) -> None:
    cursor = _encode()
    index %= len(cursor)
    if cursor[index] == replacement or cursor[index] == ".":
        return
    tampered = cursor[:index] + replacement + cursor[index + 1 :]
    with pytest.raises(CursorError):
        _decode(tampered)


def test_a_cursor_is_valid_until_its_ttl_and_refused_after() -> None:
    cursor = _encode()
    assert _decode(cursor, now=ISSUED + TTL) == POSITION
    with pytest.raises(CursorError, match=f"has expired: a cursor is valid for {TTL} s"):
        _decode(cursor, now=ISSUED + TTL + 1)


def test_a_cursor_without_its_issue_time_is_refused() -> None:
    """An earlier cursor version (no issue time) cannot live forever: it is refused."""
    payload, _ = _encode().split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    del body["t"]
    body["v"] = 1
    with pytest.raises(CursorError):
        _decode(encode_like(body))


def encode_like(body: dict) -> str:
    """A cursor of `body`, correctly signed with the test key (as an insider could make)."""
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    signature = hmac.new(KEY, payload, hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return f"{b64(payload)}.{b64(signature)}"

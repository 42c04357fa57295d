"""The pure half of signed push (chalicelib.push.signing): what a sender signs and what the
relay accepts, without AWS. The handler's use of it runs against moto in test_push.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.push.signing import (
    SIGNATURE_HEADER,
    SIGNATURE_WINDOW_SECONDS,
    TIMESTAMP_HEADER,
    Refused,
    SignatureHeaders,
    SigningKeys,
    read_signature_headers,
    signature_matches,
    signed_headers,
    signed_with_any,
)

NOW = 1_800_000_000.0
SECRET = "s3cr3t-signing-key-for-tests"


def _signed(headers: dict[str, str]) -> SignatureHeaders:
    signed = read_signature_headers(headers, NOW)
    assert isinstance(signed, SignatureHeaders), signed
    return signed


@given(body=st.binary(max_size=512), secret=st.text(min_size=1, max_size=64))
def test_what_a_sender_signs_the_relay_accepts(body: bytes, secret: str) -> None:
    signed = _signed(signed_headers(secret, body, now=NOW))
    assert signature_matches(secret, signed, body)


@given(body=st.binary(min_size=1, max_size=256), position=st.integers(min_value=0))
def test_any_changed_byte_of_the_body_breaks_the_signature(body: bytes, position: int) -> None:
    signed = _signed(signed_headers(SECRET, body, now=NOW))
    index = position % len(body)
    tampered = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
    assert not signature_matches(SECRET, signed, tampered)
    assert not signature_matches(SECRET + "x", signed, body)


def test_the_signature_is_compared_case_insensitively() -> None:
    headers = signed_headers(SECRET, b"{}", now=NOW)
    upper = {**headers, SIGNATURE_HEADER: "sha256=" + headers[SIGNATURE_HEADER][7:].upper()}
    assert _signed(upper).signature == _signed(headers).signature
    assert signature_matches(SECRET, _signed(upper), b"{}")


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (0, True),
        (SIGNATURE_WINDOW_SECONDS, True),
        (-SIGNATURE_WINDOW_SECONDS, True),
        (SIGNATURE_WINDOW_SECONDS + 1, False),
        (-SIGNATURE_WINDOW_SECONDS - 1, False),
    ],
)
def test_the_timestamp_must_be_within_the_window_either_way(offset: int, accepted: bool) -> None:
    headers = signed_headers(SECRET, b"{}", now=NOW - offset)
    result = read_signature_headers(headers, NOW)
    assert isinstance(result, SignatureHeaders) is accepted
    if not accepted:
        assert isinstance(result, Refused)
        assert result.reason == ("stale" if offset > 0 else "future")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "unsigned"),
        ({TIMESTAMP_HEADER: str(int(NOW))}, "unsigned"),
        ({TIMESTAMP_HEADER: "1.5e9", SIGNATURE_HEADER: "sha256=" + "0" * 64}, "bad_timestamp"),
        (
            {TIMESTAMP_HEADER: str(int(NOW)), SIGNATURE_HEADER: "md5=" + "0" * 32},
            "bad_signature_format",
        ),
    ],
)
def test_malformed_headers_are_refused_saying_which(headers: dict[str, str], reason: str) -> None:
    result = read_signature_headers(headers, NOW)
    assert isinstance(result, Refused) and result.reason == reason
    assert SECRET not in result.message


def test_a_refusal_never_echoes_the_signature() -> None:
    almost = "sha256:" + "ab" * 32  # a real-looking signature in the wrong format
    result = read_signature_headers(
        {TIMESTAMP_HEADER: str(int(NOW)), SIGNATURE_HEADER: almost}, NOW
    )
    assert isinstance(result, Refused) and "ab" * 32 not in result.message


def test_the_previous_secret_is_accepted_only_during_the_overlap() -> None:
    keys = SigningKeys(
        current="new-key-0123456789", current_created_at=NOW, previous="old-key-0123456789"
    )
    old = _signed(signed_headers("old-key-0123456789", b"{}", now=NOW))
    assert signed_with_any(keys, old, b"{}", NOW + 10, overlap=60)
    assert not signed_with_any(keys, old, b"{}", NOW + 61, overlap=60)
    new = _signed(signed_headers("new-key-0123456789", b"{}", now=NOW))
    assert signed_with_any(keys, new, b"{}", NOW + 10_000, overlap=60)

"""Signed HTTPS push, the pure part: what a sender signs and how the relay checks it.

`X-Relay-Timestamp` is Unix time in whole seconds, within SIGNATURE_WINDOW_SECONDS of the
relay's clock either way; `X-Relay-Signature` is `sha256=<hex HMAC-SHA256 of
"<timestamp>.<raw body>">` with the shared secret. During a rotation the previous secret is
accepted for an overlap (`SigningKeys.accepted`). No I/O here: the relay's handler
(chalicelib.push.handler) and the relay's own senders (the traffic simulator, tests) share it.
Neither a secret nor a signature is ever put in a message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from chalicelib.formats import shown

TIMESTAMP_HEADER = "X-Relay-Timestamp"
SIGNATURE_HEADER = "X-Relay-Signature"
SIGNATURE_SCHEME = "sha256="
SIGNATURE_WINDOW_SECONDS = 5 * 60

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")


def signing_input(timestamp: str, body: bytes) -> bytes:
    """What is signed: the timestamp exactly as sent, a dot, the raw body bytes."""
    return timestamp.encode("ascii") + b"." + body


def compute_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Relay-Signature` value for this timestamp and body: "sha256=<hex>"."""
    digest = hmac.new(secret.encode("utf-8"), signing_input(timestamp, body), hashlib.sha256)
    return SIGNATURE_SCHEME + digest.hexdigest()


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """Headers a sender adds to a POST /events request (the relay's own senders use this)."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: compute_signature(secret, timestamp, body),
    }


@dataclass(frozen=True)
class SignatureHeaders:
    timestamp_text: str  # as sent: it is part of what was signed
    timestamp: int
    signature: str  # normalised: "sha256=" + lower-case hex


@dataclass(frozen=True)
class Refused:
    reason: str  # short code for logs and metrics
    message: str  # for the caller; never holds a secret or a signature


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value.strip()
    return None


def read_signature_headers(headers: Mapping[str, str], now: float) -> SignatureHeaders | Refused:
    """Both headers present, well-formed, and the timestamp inside the 5-minute window."""
    timestamp_text = _header(headers, TIMESTAMP_HEADER)
    signature_text = _header(headers, SIGNATURE_HEADER)
    missing = [
        name
        for name, value in ((TIMESTAMP_HEADER, timestamp_text), (SIGNATURE_HEADER, signature_text))
        if not value
    ]
    if missing:
        return Refused(
            "unsigned",
            f"missing {' and '.join(missing)}: sign the request (see docs/providers.md)",
        )
    assert timestamp_text is not None and signature_text is not None
    if not _TIMESTAMP.fullmatch(timestamp_text):
        return Refused(
            "bad_timestamp",
            f"{TIMESTAMP_HEADER} must be Unix time in whole seconds, got {shown(timestamp_text)}",
        )
    timestamp = int(timestamp_text)
    skew = int(now) - timestamp
    if abs(skew) > SIGNATURE_WINDOW_SECONDS:
        when = f"{skew} s old" if skew > 0 else f"{-skew} s in the future"
        return Refused(
            "stale" if skew > 0 else "future",
            f"{TIMESTAMP_HEADER} is {when}; it must be within {SIGNATURE_WINDOW_SECONDS} s of "
            f"the relay's clock (now {int(now)}): sign each request when you send it",
        )
    match = _SIGNATURE.fullmatch(signature_text)
    if match is None:
        # The value is not echoed: it may be a real signature in a slightly wrong format.
        return Refused(
            "bad_signature_format",
            f"{SIGNATURE_HEADER} must be 'sha256=' followed by 64 hex digits",
        )
    return SignatureHeaders(timestamp_text, timestamp, SIGNATURE_SCHEME + match.group(1).lower())


def signature_matches(secret: str, signed: SignatureHeaders, body: bytes) -> bool:
    expected = compute_signature(secret, signed.timestamp_text, body)
    return hmac.compare_digest(expected.encode("ascii"), signed.signature.encode("ascii"))


@dataclass(frozen=True)
class SigningKeys:
    """The secret's AWSCURRENT value, when that version was made, and AWSPREVIOUS (if any)."""

    current: str
    current_created_at: float  # Unix seconds
    previous: str | None = None

    def accepted(self, now: float, overlap_seconds: float) -> list[str]:
        """The secrets a signature may be made with at `now`: the current one, and the
        previous one until `overlap_seconds` after the current one was created."""
        keys = [self.current]
        if self.previous and now - self.current_created_at < overlap_seconds:
            keys.append(self.previous)
        return keys


def signed_with_any(
    keys: SigningKeys, signed: SignatureHeaders, body: bytes, now: float, overlap: float
) -> bool:
    # Every accepted key is tried (no early exit), so timing does not tell which one matched.
    results = [signature_matches(key, signed, body) for key in keys.accepted(now, overlap)]
    return any(results)

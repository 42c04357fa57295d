"""Opaque page cursors: a position, HMAC-signed together with the filters of its query.

A cursor is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))` without padding.
The payload is compact JSON: a version, the query kind ("timeline", "window"), a digest of
the query's filters and the position to continue after. Because the digest is inside the
signed payload, a cursor re-used with other filters, or for the other kind of query, is told
apart from one that was altered, and both are refused with a message that says which.

The position holds only values that the page's own events already show (their occurred_at,
sequence, interaction id and event id), never a table key: the cursor is signed, not
encrypted.

Key: `RELAY_CURSOR_KEY` when set (any string; deployed stages should set it from a secret, so
nobody outside the stage can mint a cursor). Otherwise a key derived from the stage's identity
(app, stage, account, region, events table): stable across cold starts and instances, so a
cursor keeps working while a client pages, but computable by anyone who knows those names.
That fallback still makes cursors tamper-evident and bound to their filters; what a forger
would gain is small, since a cursor only moves the start of a query the caller is already
allowed (by IAM) to run with any `since` it likes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

from chalicelib.config import Settings

CURSOR_VERSION = 1
# Far longer than any cursor this module issues; longer input is refused before decoding.
MAX_CURSOR_CHARS = 2048
_DERIVATION_LABEL = b"cxone-relay/cursor-key/v1"


class CursorError(ValueError):
    """The cursor cannot be used for this query; the message says why (never the key)."""


def cursor_key(settings: Settings, env: Mapping[str, str] | None = None) -> bytes:
    """The signing key: from RELAY_CURSOR_KEY if set, else derived from the stage's identity."""
    env = os.environ if env is None else env
    configured = env.get("RELAY_CURSOR_KEY")
    if configured:
        # Hashing gives a fixed-length key whatever the secret's format.
        return hashlib.sha256(configured.encode("utf-8")).digest()
    identity = "|".join(
        (
            settings.app_name,
            settings.stage,
            settings.account_id or "-",
            settings.region,
            settings.names.events_table,
        )
    )
    return hmac.new(_DERIVATION_LABEL, identity.encode("utf-8"), hashlib.sha256).digest()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def filters_digest(kind: str, filters: Mapping[str, Any]) -> str:
    """A short, stable fingerprint of a query's kind and filters (None values count)."""
    canonical = json.dumps(
        {"kind": kind, "filters": dict(filters)}, sort_keys=True, separators=(",", ":")
    )
    return _b64encode(hashlib.sha256(canonical.encode("utf-8")).digest()[:12])


def _signature(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


def encode_cursor(
    position: Mapping[str, Any], *, kind: str, filters: Mapping[str, Any], key: bytes
) -> str:
    """An opaque cursor for `position`, usable only with the same kind and filters."""
    payload = json.dumps(
        {"v": CURSOR_VERSION, "k": kind, "f": filters_digest(kind, filters), "p": dict(position)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    return f"{_b64encode(payload)}.{_b64encode(_signature(key, payload))}"


def decode_cursor(
    cursor: str, *, kind: str, filters: Mapping[str, Any], key: bytes
) -> dict[str, Any]:
    """The position inside `cursor`; CursorError if altered, foreign, or for other filters."""
    invalid = CursorError(
        "is not a cursor issued by this API (altered or truncated); "
        "pass next_cursor exactly as it was returned"
    )
    if not cursor or len(cursor) > MAX_CURSOR_CHARS or cursor.count(".") != 1:
        raise invalid
    encoded_payload, encoded_signature = cursor.split(".")
    try:
        payload = _b64decode(encoded_payload)
        signature = _b64decode(encoded_signature)
    except (binascii.Error, ValueError):
        raise invalid from None
    # Constant-time comparison: the response time must not reveal how much of a guess matched.
    if not hmac.compare_digest(signature, _signature(key, payload)):
        raise invalid
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise invalid from None
    if not isinstance(body, dict) or body.get("v") != CURSOR_VERSION:
        raise invalid
    if body.get("k") != kind:
        raise CursorError(f"was issued for another kind of query ({body.get('k')}), not {kind}")
    if body.get("f") != filters_digest(kind, filters):
        raise CursorError(
            "was issued for other filters; a cursor continues only the query that returned it "
            "(same path and since/until/detail_type/interaction_id)"
        )
    position = body.get("p")
    if not isinstance(position, dict):
        raise invalid
    return position

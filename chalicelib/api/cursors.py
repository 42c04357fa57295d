"""Opaque page cursors: a position, HMAC-signed together with the filters of its query.

A cursor is `base64url(payload) "." base64url(HMAC-SHA256(key, payload))` without padding.
The payload is compact JSON: a version, the query kind ("timeline", "window"), a digest of
the query's filters and the position to continue after. Because the digest is inside the
signed payload, a cursor re-used with other filters, or for the other kind of query, is told
apart from one that was altered, and both are refused with a message that says which.

The position holds only values that the page's own events already show (their occurred_at,
sequence, interaction id and event id), never a table key: the cursor is signed, not
encrypted.

A cursor carries the time it was issued and is refused `cursor_ttl_seconds` later (an hour by
default, RELAY_CURSOR_TTL_SECONDS), so a leaked cursor stops working on its own.

Key: the stage's generated secret, named by RELAY_CURSOR_KEY_SECRET (provisioning and the
packaged template create it with a random value; the function gets its name, never the key),
read through Powertools parameters and cached for CURSOR_KEY_CACHE_SECONDS. Nothing derives
the key from public names, so nobody outside the stage can mint a cursor. Rotating the secret
makes cursors issued before it refused (a 400 that says so) once the cache expires; callers
start their query again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.utilities.parameters import GetParameterError, SecretsProvider

from chalicelib.errors import BadRequest, DependencyUnavailable
from chalicelib.telemetry import logger

# 2: cursors carry the time they were issued (version 1 cursors had none; they are refused).
CURSOR_VERSION = 2
# Far longer than any cursor this module issues; longer input is refused before decoding.
MAX_CURSOR_CHARS = 2048
# One secret read per instance per five minutes, not one per request.
CURSOR_KEY_CACHE_SECONDS = 300


class CursorError(BadRequest):
    """The cursor cannot be used for this query (a 400); the message says why, never the key."""

    def __init__(self, problem: str) -> None:
        super().__init__({"cursor": [problem]})


class CursorKeyUnavailable(DependencyUnavailable):
    """The signing key's secret cannot be read: a 503 (the message is safe to return)."""


# One Powertools provider (and so one cache) per Secrets Manager client: a process has one
# per runtime; a test that builds a new runtime gets a fresh cache with it.
_providers: weakref.WeakKeyDictionary[Any, SecretsProvider] = weakref.WeakKeyDictionary()
_providers_lock = threading.Lock()


def _provider(secrets_client: Any) -> SecretsProvider:
    with _providers_lock:
        provider = _providers.get(secrets_client)
        if provider is None:
            provider = _providers[secrets_client] = SecretsProvider(boto3_client=secrets_client)
        return provider


def cursor_key(secrets_client: Any, secret_name: str) -> bytes:
    """The signing key from the stage's cursor-key secret (cached), as a fixed-length key."""
    try:
        value = _provider(secrets_client).get(secret_name, max_age=CURSOR_KEY_CACHE_SECONDS)
    except GetParameterError as error:
        # Powertools folds every failure into one error; its text names the AWS error only.
        logger.warning("cursor signing key unreadable", extra={"error": str(error)[:200]})
        raise CursorKeyUnavailable(
            "the cursor signing key cannot be read right now; retry shortly"
        ) from None
    if not isinstance(value, str) or not value:
        raise CursorKeyUnavailable("the cursor signing key secret has no value; provision it")
    # Hashing gives a fixed-length key whatever the secret's format.
    return hashlib.sha256(value.encode("utf-8")).digest()


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
    position: Mapping[str, Any],
    *,
    kind: str,
    filters: Mapping[str, Any],
    key: bytes,
    issued_at: float | None = None,
) -> str:
    """An opaque cursor for `position`, usable only with the same kind and filters."""
    issued = int(time.time() if issued_at is None else issued_at)
    payload = json.dumps(
        {
            "v": CURSOR_VERSION,
            "k": kind,
            "f": filters_digest(kind, filters),
            "t": issued,
            "p": dict(position),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    return f"{_b64encode(payload)}.{_b64encode(_signature(key, payload))}"


def decode_cursor(
    cursor: str,
    *,
    kind: str,
    filters: Mapping[str, Any],
    key: bytes | Callable[[], bytes],
    ttl_seconds: float,
    now: float | None = None,
) -> dict[str, Any]:
    """The position inside `cursor`; CursorError if altered, signed with another key, expired,
    or issued for another query. `key` may be a function: it is called only for a cursor that
    has a cursor's shape, so junk is refused without reading the key's secret."""
    invalid = CursorError(
        "is not a cursor issued by this API: altered, truncated, or signed with another key "
        "(the stage's key was rotated); pass next_cursor exactly as it was returned, or start "
        "the query again without a cursor"
    )
    if not cursor or len(cursor) > MAX_CURSOR_CHARS or cursor.count(".") != 1:
        raise invalid
    encoded_payload, encoded_signature = cursor.split(".")
    try:
        payload = _b64decode(encoded_payload)
        signature = _b64decode(encoded_signature)
    except (binascii.Error, ValueError):
        raise invalid from None
    if len(signature) != hashlib.sha256().digest_size or not payload:
        raise invalid
    signing_key = key() if callable(key) else key
    # Constant-time comparison: the response time must not reveal how much of a guess matched.
    if not hmac.compare_digest(signature, _signature(signing_key, payload)):
        raise invalid
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise invalid from None
    if not isinstance(body, dict) or body.get("v") != CURSOR_VERSION:
        raise invalid
    issued = body.get("t")
    if not isinstance(issued, int) or isinstance(issued, bool):
        raise invalid
    age = (time.time() if now is None else now) - issued
    if age > ttl_seconds:
        raise CursorError(
            f"has expired: a cursor is valid for {int(ttl_seconds)} s after it was issued; "
            "start the query again without a cursor"
        )
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

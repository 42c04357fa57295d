"""The event store's item layout (events table): one item per delivered event.

    pk           interaction id                      -> an interaction's timeline
    sk           "E#" + dedup key                    -> also the dedup record (delivered)
    time_bucket  day of occurred_at ("2026-11-29")   -> keys-only GSI `by_time` for windows
    time_sort    occurred_at # interaction # order # event id
    msg          the delivered message, zlib-compressed JSON (fewer write units)
    sha          payload fingerprint, to count same-key-different-payload conflicts
    occurred_at, event_id, seq   plain attributes for ordering without decompressing
    expires_at   TTL (store retention); readers never rely on TTL deletion timing

The item is written only once the event reached every consumer, so "stored" means
"delivered" and a re-sent event finds its dedup record here.
"""

from __future__ import annotations

import json
import zlib
from datetime import datetime, timedelta
from typing import Any

EVENT_KEY_PREFIX = "E#"
TIME_INDEX = "by_time"


def event_sort_key(dedup_key: str) -> str:
    return EVENT_KEY_PREFIX + dedup_key


def time_bucket(occurred_at: str) -> str:
    return occurred_at[:10]


def time_sort(message: dict[str, Any]) -> str:
    sequence = message.get("sequence")
    order = f"{sequence:012d}" if isinstance(sequence, int) else "-"
    return f"{message['occurred_at']}#{message['interaction_id']}#{order}#{message['event_id']}"


def encode_message(message: dict[str, Any]) -> bytes:
    raw = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return zlib.compress(raw, 6)


def decode_message(item: dict[str, Any]) -> dict[str, Any]:
    """The delivered message of a low-level (attribute-typed) item."""
    return json.loads(zlib.decompress(item["msg"]["B"]).decode("utf-8"))


def event_key(interaction_id: str, dedup_key: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": interaction_id}, "sk": {"S": event_sort_key(dedup_key)}}


def event_item(
    message: dict[str, Any],
    *,
    dedup_key: str,
    payload_sha256: str,
    retention_days: int,
    now: datetime,
) -> dict[str, Any]:
    """The low-level item for one delivered message."""
    item: dict[str, Any] = {
        **event_key(message["interaction_id"], dedup_key),
        "time_bucket": {"S": time_bucket(message["occurred_at"])},
        "time_sort": {"S": time_sort(message)},
        "occurred_at": {"S": message["occurred_at"]},
        "event_id": {"S": message["event_id"]},
        "msg": {"B": encode_message(message)},
        "sha": {"S": payload_sha256},
        "expires_at": {"N": str(int((now + timedelta(days=retention_days)).timestamp()))},
    }
    if isinstance(message.get("sequence"), int):
        item["seq"] = {"N": str(message["sequence"])}
    return item


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (for capacity-unit accounting)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        ((kind, raw),) = value.items()
        if kind == "B":
            size += len(raw)
        elif kind in ("S", "N"):
            size += len(str(raw).encode())
        else:
            size += len(json.dumps(raw, default=str).encode())
    return size

"""The event store's item layout: the events table and the time index beside it.

Events table, one item per delivered event (short attribute names: every byte is billed on
every write, and a stored event is written once per event):

    pk           interaction id                      -> an interaction's timeline
    sk           "E#" + dedup key                    -> also the dedup record (delivered)
    t            time_sort: occurred_at # interaction # order # event id   (window order,
                 positions, and the order fields: nothing else stores them)
    m            the delivered message without the fields `pk` and `t` already hold
                 (interaction_id, occurred_at, sequence, event_id), zlib-compressed JSON
                 with a preset dictionary (below)
    sha          payload fingerprint, to count same-key-different-payload conflicts (the
                 ledger reads it by this name)
    expires_at   TTL (store retention; the table's TTL attribute); readers never rely on TTL
                 deletion timing

Items written before this layout stay readable: they hold `time_sort` instead of `t`, the
whole message in `msg` (zlib-compressed, or plain JSON), and `occurred_at`, `event_id`,
`seq` beside it; readers take either shape (`stored_time_sort`, `decode_message`).

The preset dictionary: most of a provider's event is the same from one event to the next
(field names, the source, the topic's structure), and a 1-10 KB event alone gives zlib too
little to learn it from. `message-dictionary-1.txt` (beside this file, built by
benchmarks/message_dictionary.py from one captured event of each shape) primes the
compressor with those shapes: on real Genesys, Amazon Connect and CXone payloads it cuts the
stored bytes by about a third beyond plain zlib, and a fifth of the events items' write units.
A zlib stream names its dictionary (FDICT flag, Adler-32 id), so a blob says how to read it:
a dictionary once used never changes (a new one is a new file added to MESSAGE_DICTIONARIES),
and blobs without one (plain zlib of earlier writes, plain JSON) read as before.

The item is written only once the event reached every consumer, so "stored" means
"delivered" and a re-sent event finds its dedup record here.

Time-index table, one item per second of occurred_at per settled batch (not per event):

    pk           "<day>#<shard>"  ("2026-11-29#3"), shard in 0..shards-1
    sk           "<second>#<token>"  ("2026-11-29T09:00:01#5f2c0e9a41b7")
    e            zlib-compressed JSON list of entries, one per event of that second in the
                 batch: [".250Z", interaction id, sequence or null, event id,
                 dedup key or null (null: same as the event id), detail type]
    expires_at   TTL, the same as the events' items

A keys-only GSI on the events table would cost one write unit per event, all of a day under
one partition key (a hot partition at 1,000 events/s). Here a batch of 10 events of one second
is one item of about 650 bytes: one write unit for ten events. The shard spreads a day's
writes over `shards` partition keys; readers query every shard of a day and merge them (see
queries.py). The token is a hash of the item's entries, so a settle retried with the same
events rewrites the same item instead of adding a copy (readers also drop repeated entries).
"""

from __future__ import annotations

import functools
import hashlib
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from chalicelib.config import Settings

EVENT_KEY_PREFIX = "E#"
# Seconds are "YYYY-MM-DDTHH:MM:SS": the first 19 characters of a stored time.
SECOND_CHARS = 19
DAY_CHARS = 10
TOKEN_CHARS = 12
# Bounds one index item's size whatever the batch size (DynamoDB items stop at 400 KB); a
# second holding more events of one batch gets several items.
MAX_ENTRIES_PER_INDEX_ITEM = 100


@dataclass(frozen=True)
class StoreTables:
    """Where stored events live: the events table and its time index with its shard count.

    Readers query shards 0..shards-1 of every day, so lowering the shard count hides entries
    written to the higher shards until they expire: only ever raise it.
    """

    events: str
    time_index: str
    time_index_shards: int

    @classmethod
    def of(cls, settings: Settings) -> StoreTables:
        return cls(
            events=settings.names.events_table,
            time_index=settings.names.time_index_table,
            time_index_shards=settings.time_index_shards,
        )


def event_sort_key(dedup_key: str) -> str:
    return EVENT_KEY_PREFIX + dedup_key


def time_sort_of(occurred_at: str, interaction_id: str, sequence: int | None, event_id: str) -> str:
    """Window order: time, then interaction, then its order key, then event id."""
    order = f"{sequence:012d}" if isinstance(sequence, int) else "-"
    return f"{occurred_at}#{interaction_id}#{order}#{event_id}"


def time_sort(message: Mapping[str, Any]) -> str:
    return time_sort_of(
        message["occurred_at"],
        message["interaction_id"],
        message.get("sequence"),
        message["event_id"],
    )


# The message fields an events item holds in its key and time_sort instead of in `m`.
_FIELDS_IN_KEYS = ("interaction_id", "occurred_at", "sequence", "event_id")
ZLIB_LEVEL = 9  # the smallest output; the messages are small enough that the CPU is noise
ZLIB_WINDOW_BITS = 15
ZLIB_MEMORY_LEVEL = 9
# Every dictionary a stored message may name, oldest first; new messages use the last one.
MESSAGE_DICTIONARIES = ("message-dictionary-1.txt",)
_ZLIB_FDICT = 0x20  # the FLG byte's bit: a 4-byte dictionary id (Adler-32) follows


@functools.cache
def _dictionaries() -> dict[int, bytes]:
    """The message dictionaries by their zlib id (read once, on first use)."""
    here = Path(__file__).resolve().parent
    contents = [(here / name).read_bytes() for name in MESSAGE_DICTIONARIES]
    return {zlib.adler32(content): content for content in contents}


def _message_dictionary() -> bytes:
    """The dictionary new messages are compressed with: the newest."""
    return list(_dictionaries().values())[-1]


def encode_message(message: Mapping[str, Any]) -> bytes:
    """`m`: the message without the fields the item's key and time_sort hold, compressed
    with the current message dictionary."""
    rest = {name: value for name, value in message.items() if name not in _FIELDS_IN_KEYS}
    raw = json.dumps(rest, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    compressor = zlib.compressobj(
        ZLIB_LEVEL, zlib.DEFLATED, ZLIB_WINDOW_BITS, ZLIB_MEMORY_LEVEL, zdict=_message_dictionary()
    )
    return compressor.compress(raw) + compressor.flush()


def plain_blob(blob: bytes) -> bytes:
    """The JSON bytes of a stored blob: plain JSON, zlib, or zlib with a message dictionary.

    zlib.error for a stream that is none of them (or names a dictionary this code lacks).
    """
    # Plain JSON starts with "{" or "["; a zlib stream never does (its first byte is 0x78 or
    # 0x08-0x68).
    if blob[:1] in (b"{", b"["):
        return blob
    if len(blob) < 6 or not blob[1] & _ZLIB_FDICT:
        return zlib.decompress(blob)
    dictionary = _dictionaries().get(int.from_bytes(blob[2:6], "big"))
    if dictionary is None:
        raise zlib.error("the blob names a dictionary this code does not have")
    decompressor = zlib.decompressobj(ZLIB_WINDOW_BITS, zdict=dictionary)
    return decompressor.decompress(blob) + decompressor.flush()


def json_blob(blob: bytes) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(plain_blob(blob).decode("utf-8"))
    return message


@dataclass(frozen=True)
class OrderFields:
    """What ordering needs of a stored item, read from its time_sort (no decompression)."""

    occurred_at: str
    sequence: int | None
    event_id: str


def stored_time_sort(item: dict[str, Any]) -> str:
    """The time_sort of a low-level events item, of either layout."""
    return str((item.get("t") or item["time_sort"])["S"])


def order_fields(item: dict[str, Any]) -> OrderFields:
    """occurred_at, sequence and event id of a low-level events item, from its time_sort.

    time_sort is "<occurred_at>#<interaction id>#<order>#<event id>": occurred_at holds no
    "#", the interaction id is the item's pk (so a "#" inside it is no ambiguity), the order
    is 12 digits or "-", and the event id is the rest.
    """
    position = stored_time_sort(item)
    occurred_at, _, rest = position.partition("#")
    order, _, event_id = rest[len(item["pk"]["S"]) + 1 :].partition("#")
    return OrderFields(
        occurred_at=occurred_at,
        sequence=None if order == "-" else int(order),
        event_id=event_id,
    )


def decode_message(item: dict[str, Any]) -> dict[str, Any]:
    """The delivered message of a low-level events item, of either layout."""
    if "m" not in item:  # written before the compact layout: the whole message
        return json_blob(item["msg"]["B"])
    rest = json_blob(item["m"]["B"])
    fields = order_fields(item)
    # Back in the delivered message's own field order: ids first, the order fields just
    # before received_at.
    message: dict[str, Any] = {"event_id": fields.event_id, "interaction_id": item["pk"]["S"]}
    order = {"sequence": fields.sequence, "occurred_at": fields.occurred_at}
    for name, value in rest.items():
        if name == "received_at":
            message.update(order)
        message[name] = value
    message.update({name: value for name, value in order.items() if name not in message})
    return message


def event_key(interaction_id: str, dedup_key: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": interaction_id}, "sk": {"S": event_sort_key(dedup_key)}}


def _expires_at(now: datetime, retention_days: int) -> dict[str, str]:
    return {"N": str(int((now + timedelta(days=retention_days)).timestamp()))}


def event_item(
    message: Mapping[str, Any],
    *,
    dedup_key: str,
    payload_sha256: str,
    retention_days: int,
    now: datetime,
) -> dict[str, Any]:
    """The low-level item for one delivered message."""
    return {
        **event_key(message["interaction_id"], dedup_key),
        "t": {"S": time_sort(message)},
        "m": {"B": encode_message(message)},
        "sha": {"S": payload_sha256},
        "expires_at": _expires_at(now, retention_days),
    }


# ---- time index -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeIndexEntry:
    """One stored event as the time index knows it: enough to order, filter and fetch it."""

    time_sort: str
    occurred_at: str
    interaction_id: str
    dedup_key: str
    detail_type: str

    def event_key(self) -> dict[str, dict[str, str]]:
        return event_key(self.interaction_id, self.dedup_key)


def _entry_fields(message: Mapping[str, Any], dedup_key: str) -> list[Any]:
    sequence = message.get("sequence")
    return [
        message["occurred_at"][SECOND_CHARS:],
        message["interaction_id"],
        sequence if isinstance(sequence, int) else None,
        message["event_id"],
        None if dedup_key == message["event_id"] else dedup_key,
        message["detail_type"],
    ]


def time_index_items(
    messages: Sequence[tuple[Mapping[str, Any], str]],
    *,
    shards: int,
    retention_days: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Low-level time-index items for the stored events of one batch.

    `messages` holds (delivered message, dedup key) pairs. One item per second of occurred_at
    (more only past MAX_ENTRIES_PER_INDEX_ITEM events of one second), entries in time_sort
    order; an event given twice is indexed once.
    """
    by_second: dict[str, dict[str, list[Any]]] = {}
    for message, dedup_key in messages:
        second = message["occurred_at"][:SECOND_CHARS]
        by_second.setdefault(second, {})[time_sort(message)] = _entry_fields(message, dedup_key)
    expires_at = _expires_at(now, retention_days)
    items = []
    for second, entries in sorted(by_second.items()):
        ordered = [entries[key] for key in sorted(entries)]
        for start in range(0, len(ordered), MAX_ENTRIES_PER_INDEX_ITEM):
            chunk = ordered[start : start + MAX_ENTRIES_PER_INDEX_ITEM]
            raw = json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            # Same entries, same token and shard: a repeated write replaces, never duplicates.
            token = hashlib.sha256(second.encode() + raw).hexdigest()[:TOKEN_CHARS]
            shard = int(token, 16) % shards
            items.append(
                {
                    "pk": {"S": f"{second[:DAY_CHARS]}#{shard}"},
                    "sk": {"S": f"{second}#{token}"},
                    "e": {"B": zlib.compress(raw, 9)},
                    "expires_at": expires_at,
                }
            )
    return items


def time_index_second(item: dict[str, Any]) -> str:
    """The second ("YYYY-MM-DDTHH:MM:SS") a time-index item holds entries of."""
    return str(item["sk"]["S"])[:SECOND_CHARS]


def decode_time_index_item(item: dict[str, Any]) -> list[TimeIndexEntry]:
    """The entries of a low-level time-index item, in the order they were written."""
    second = time_index_second(item)
    entries = []
    for fraction, interaction_id, sequence, event_id, dedup_key, detail_type in json.loads(
        plain_blob(item["e"]["B"]).decode("utf-8")
    ):
        occurred_at = second + fraction
        entries.append(
            TimeIndexEntry(
                time_sort=time_sort_of(occurred_at, interaction_id, sequence, event_id),
                occurred_at=occurred_at,
                interaction_id=interaction_id,
                dedup_key=event_id if dedup_key is None else dedup_key,
                detail_type=detail_type,
            )
        )
    return entries


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

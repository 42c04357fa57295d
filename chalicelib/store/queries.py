"""Read-side queries over the event store: an interaction's timeline and time windows.

Only Query and BatchGetItem, never Scan (see layout.py for the item layout):
- timeline: the interaction's partition (pk = interaction id), sorted by order key;
- window: the time-index table, one day after another from `since` to `until`; each day's
  shards are queried from the first second needed and merged second by second (every item of
  a second is read before that second's entries are sorted), chronological by `time_sort`
  (occurred_at, interaction, order, event id). Time and detail_type filters apply to the
  entries; only the events a page returns are fetched, with BatchGetItem;
- window with an interaction id: that interaction's partition instead, filtered to the window
  and sorted by `time_sort`, so the cost follows the interaction's size, not the window's
  traffic. Both window plans give the same order and the same positions, so a cursor from one
  page is valid whichever plan the next page uses.

A window page's cost does not depend on how many events the store holds: it reads the index
from its start position only as far as the page needs (plus one second to know whether more
follow), and one Query per shard of each day it touches even when that shard is empty. A page
that continues from a cursor re-reads the whole second the cursor points into, so its index
reads grow with how many events share that second (about 1,000 at 1,000 events/s: roughly
100 index items, about 65 KB, 8 read units eventually consistent), never with the table.

A page holds at most `limit` events and stops early once the JSON of its events reaches
`max_bytes` (responses stay under 5 MB). Positions are exclusive ("continue after this"),
built from values the events themselves show. Reads are eventually consistent (half the read
units of strongly consistent ones): an event stored a moment ago may show up a moment later.
Items past their retention (expires_at) are left out even if TTL has not deleted them yet.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from chalicelib.aws import batch_get, chunked
from chalicelib.ingest.ordering import sequence_key, sort_interaction, time_key
from chalicelib.store.layout import (
    EVENT_KEY_PREFIX,
    SECOND_CHARS,
    StoreTables,
    TimeIndexEntry,
    decode_message,
    decode_time_index_item,
    event_sort_key,
    order_fields,
    stored_time_sort,
    time_index_second,
)

# API Gateway and Lambda allow 6 MB; the contract promises responses under 5 MB, and the
# envelope around the events (keys, cursor) needs a little room.
RESPONSE_MAX_BYTES = 5 * 1024 * 1024 - 16 * 1024
# BatchGetItem takes at most 100 keys.
BATCH_GET_MAX_KEYS = 100
# A window page stops after examining this many index entries even if few matched (a rare
# detail_type), so one request's cost and time stay bounded; the cursor continues from there.
MAX_EXAMINED_PER_PAGE = 5000
# Index items one Query asks one shard for, at most (about 650 bytes each when full).
MAX_ITEMS_PER_QUERY = 100


@dataclass(frozen=True)
class StoredEvent:
    """One stored event: its position in window order and its delivered message."""

    time_sort: str
    message: dict[str, Any]


@dataclass(frozen=True)
class TimelinePosition:
    """The order keys of the last event returned, of both kinds (see `timeline`)."""

    sequence: tuple[int, str] | None
    time: tuple[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"seq": list(self.sequence) if self.sequence else None, "time": list(self.time)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TimelinePosition:
        """ValueError if `data` is not a position this module wrote."""
        seq, moment = data.get("seq"), data.get("time")
        if not (
            isinstance(moment, list)
            and len(moment) == 2
            and all(isinstance(x, str) for x in moment)
        ):
            raise ValueError("bad timeline position")
        sequence: tuple[int, str] | None = None
        if seq is not None:
            if not (
                isinstance(seq, list)
                and len(seq) == 2
                and isinstance(seq[0], int)
                and not isinstance(seq[0], bool)
                and isinstance(seq[1], str)
            ):
                raise ValueError("bad timeline position")
            sequence = (seq[0], seq[1])
        return cls(sequence=sequence, time=(moment[0], moment[1]))


@dataclass(frozen=True)
class TimelinePage:
    events: list[dict[str, Any]]
    next_position: TimelinePosition | None  # None: nothing after this page


@dataclass(frozen=True)
class WindowFilter:
    """Which stored events a window holds: since <= occurred_at < until, plus equality filters.

    `since` and `until` are normalised the way stored times are written (UTC, milliseconds,
    `Z`), so comparing strings compares times.
    """

    since: str
    until: str
    detail_type: str | None = None
    interaction_id: str | None = None


@dataclass(frozen=True)
class WindowPage:
    events: list[StoredEvent]
    # time_sort of the last entry looked at (returned or filtered out): the next page starts
    # after it. None when nothing was examined.
    last_examined: str | None
    exhausted: bool  # True: nothing in the window after `last_examined`


# ---- pure helpers ----------------------------------------------------------------------------


def _position_of(item: dict[str, Any]) -> TimelinePosition:
    fields = order_fields(item)
    sequence = sequence_key(fields) if fields.sequence is not None else None
    return TimelinePosition(sequence=sequence, time=time_key(fields))


def sort_timeline(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """Items in the pipeline's order-key order (ordering.sort_interaction), and whether
    sequences were the key (every event has one) or times were."""
    by_sequence = all(order_fields(item).sequence is not None for item in items)
    return sort_interaction(items, order_fields), by_sequence


def after_position(
    items: list[dict[str, Any]], by_sequence: bool, position: TimelinePosition
) -> list[dict[str, Any]]:
    """The sorted items strictly after `position`, compared with keys of the kind in use.

    The position carries both kinds, so it stays meaningful if the kind changed between pages
    (an event without a sequence arrived, or one expired).
    """
    if by_sequence and position.sequence is not None:
        return [i for i in items if sequence_key(order_fields(i)) > position.sequence]
    return [i for i in items if time_key(order_fields(i)) > position.time]


def json_size(message: dict[str, Any]) -> int:
    """Bytes of `message` in a response (Chalice writes compact JSON with ASCII escapes)."""
    return len(json.dumps(message, separators=(",", ":")).encode("ascii"))


def day_buckets(lower: str, upper: str) -> list[str]:
    """The day buckets ("YYYY-MM-DD") of times from `lower` to `upper`, both inclusive."""
    first = date.fromisoformat(lower[:10])
    last = date.fromisoformat(upper[:10])
    days = []
    while first <= last:
        days.append(first.isoformat())
        first += timedelta(days=1)
    return days


def _expired(item: dict[str, Any], now_epoch: int) -> bool:
    expires = item.get("expires_at")
    return expires is not None and int(expires["N"]) <= now_epoch


def _epoch(now: datetime | None) -> int:
    return int((now or datetime.now(UTC)).timestamp())


# ---- timeline -------------------------------------------------------------------------------


def interaction_items(dynamodb: Any, table: str, interaction_id: str) -> list[dict[str, Any]]:
    """Every stored event item of one interaction (its partition), in any order."""
    request: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {
            ":pk": {"S": interaction_id},
            ":prefix": {"S": EVENT_KEY_PREFIX},
        },
    }
    items: list[dict[str, Any]] = []
    while True:
        response = dynamodb.query(**request)
        items.extend(response.get("Items", []))
        last_key = response.get("LastEvaluatedKey")
        if not last_key:
            return items
        request["ExclusiveStartKey"] = last_key


def timeline(
    dynamodb: Any,
    table: str,
    interaction_id: str,
    *,
    limit: int,
    after: TimelinePosition | None = None,
    max_bytes: int | None = RESPONSE_MAX_BYTES,
    now: datetime | None = None,
) -> TimelinePage:
    """One interaction's events in order-key order, `limit` at a time, after `after`.

    Reads the whole partition for every page (its sort key is the dedup key, not the order
    key): an interaction's events are few, and sorting them here keeps the order rule in one
    place. Only the returned page is decompressed.
    """
    now_epoch = _epoch(now)
    items = [
        item
        for item in interaction_items(dynamodb, table, interaction_id)
        if not _expired(item, now_epoch)
    ]
    ordered, by_sequence = sort_timeline(items)
    if after is not None:
        ordered = after_position(ordered, by_sequence, after)
    events: list[dict[str, Any]] = []
    size = 0
    taken = 0
    for item in ordered[:limit]:
        message = decode_message(item)
        size += json_size(message)
        if max_bytes is not None and events and size > max_bytes:
            break
        events.append(message)
        taken += 1
    if taken == len(ordered):
        return TimelinePage(events=events, next_position=None)
    return TimelinePage(events=events, next_position=_position_of(ordered[taken - 1]))


# ---- window ---------------------------------------------------------------------------------


def _last_instant_before(until: str) -> str:
    """`until` as an inclusive bound, one millisecond earlier: an `until` at midnight must not
    cost a query of that (empty) day."""
    moment = datetime.strptime(until, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    earlier = moment - timedelta(milliseconds=1)
    return earlier.strftime("%Y-%m-%dT%H:%M:%S.") + f"{earlier.microsecond // 1000:03d}Z"


def query_limit(wanted: int, shards: int, entries_per_item: float) -> int:
    """Items to ask one shard for: its share of the `wanted` entries at the entries per item
    seen so far, plus one to see where the second ends. Never fewer than 2 (one item and the
    next second) nor more than MAX_ITEMS_PER_QUERY."""
    share = math.ceil(max(wanted, 1) / (shards * max(entries_per_item, 1.0)))
    return min(max(share + 1, 2), MAX_ITEMS_PER_QUERY)


def second_entries(
    entries: Iterable[TimeIndexEntry], window_filter: WindowFilter, after: str | None
) -> list[TimeIndexEntry]:
    """The window's entries among one second's, chronological, after `after`.

    A settle retried with other events may have indexed an event twice, under two tokens:
    each time_sort is kept once.
    """
    kept: dict[str, TimeIndexEntry] = {}
    for entry in entries:
        in_window = window_filter.since <= entry.occurred_at < window_filter.until
        if in_window and (after is None or entry.time_sort > after):
            kept[entry.time_sort] = entry
    return [kept[key] for key in sorted(kept)]


class _ShardReader:
    """The index items of one day's shard (partition), in sort-key order, read on demand."""

    def __init__(self, dynamodb: Any, table: str, partition: str, lower: str, upper: str):
        self._dynamodb = dynamodb
        self._request: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                ":pk": {"S": partition},
                ":lo": {"S": lower},
                ":hi": {"S": upper},
            },
        }
        self.buffer: deque[dict[str, Any]] = deque()
        self._start_key: dict[str, Any] | None = None
        self.done = False

    def fetch(self, limit: int) -> list[dict[str, Any]]:
        request = dict(self._request, Limit=limit)
        if self._start_key:
            request["ExclusiveStartKey"] = self._start_key
        response = self._dynamodb.query(**request)
        items: list[dict[str, Any]] = response.get("Items", [])
        self.buffer.extend(items)
        self._start_key = response.get("LastEvaluatedKey")
        self.done = not self._start_key
        return items


class _IndexStream:
    """The window's time-index entries after a position, chronological, read on demand.

    A day's entries are spread over its shards and, inside a shard, the items of one second
    are ordered by token, not by time; so a second's items are read from every shard before
    its entries are sorted and handed out. `want(n)` tells how many more entries the page
    expects to take, which sizes the queries (see `query_limit`).
    """

    def __init__(
        self,
        dynamodb: Any,
        tables: StoreTables,
        window_filter: WindowFilter,
        lower: str,
        after: str | None,
        now_epoch: int,
    ):
        self._dynamodb = dynamodb
        self._tables = tables
        self._filter = window_filter
        self._after = after
        self._now_epoch = now_epoch
        last = _last_instant_before(window_filter.until)
        # BETWEEN over "<second>#<token>": from the lower bound's second to the last second.
        self._lower_key = lower[:SECOND_CHARS] + "#"
        self._upper_key = last[:SECOND_CHARS] + "$"  # "$" sorts right after "#"
        empty = lower >= window_filter.until
        self._days: Iterator[str] = iter([] if empty else day_buckets(lower, last))
        self._shards: list[_ShardReader] = []
        self._ready: deque[TimeIndexEntry] = deque()
        self._wanted = 1
        self._items_read = 0
        self._entries_read = 0

    def want(self, count: int) -> None:
        self._wanted = count

    def peek(self) -> TimeIndexEntry | None:
        while not self._ready:
            if not self._read_next_second():
                return None
        return self._ready[0]

    def pop(self) -> TimeIndexEntry | None:
        entry = self.peek()
        if entry is not None:
            self._ready.popleft()
            self._wanted = max(self._wanted - 1, 1)
        return entry

    def _fetch(self, shard: _ShardReader) -> None:
        limit = query_limit(
            self._wanted,
            len(self._shards),
            self._entries_read / self._items_read if self._items_read else 1.0,
        )
        self._items_read += len(shard.fetch(limit))

    def _read_next_second(self) -> bool:
        """Move the next second holding index items into `_ready` (possibly none of them in
        the window); False once every day is read."""
        while True:
            if not self._shards:
                day = next(self._days, None)
                if day is None:
                    return False
                self._shards = [
                    _ShardReader(
                        self._dynamodb,
                        self._tables.time_index,
                        f"{day}#{shard}",
                        self._lower_key,
                        self._upper_key,
                    )
                    for shard in range(self._tables.time_index_shards)
                ]
            for shard in self._shards:
                if not shard.buffer and not shard.done:
                    self._fetch(shard)
            heads = [time_index_second(shard.buffer[0]) for shard in self._shards if shard.buffer]
            if heads:
                break
            self._shards = []  # this day is read; on to the next
        second = min(heads)
        items: list[dict[str, Any]] = []
        for shard in self._shards:
            while True:
                while shard.buffer and time_index_second(shard.buffer[0]) == second:
                    items.append(shard.buffer.popleft())
                if shard.buffer or shard.done:
                    break
                self._fetch(shard)  # the shard's page ended inside the second: read on
        entries: list[TimeIndexEntry] = []
        for item in items:
            decoded = decode_time_index_item(item)
            self._entries_read += len(decoded)
            if not _expired(item, self._now_epoch):
                entries += decoded
        self._ready.extend(second_entries(entries, self._filter, self._after))
        return True


def stored_items(
    dynamodb: Any, table: str, keys: list[dict[str, Any]], *, consistent: bool = False
) -> dict[tuple[str, str], Any]:
    """Items by (pk, sk); keys that no longer exist (expired and deleted) are simply absent.

    Raises DependencyUnavailable when DynamoDB fails or keeps keys unprocessed."""
    found: dict[tuple[str, str], Any] = {}
    for chunk in chunked(keys, BATCH_GET_MAX_KEYS):
        request: dict[str, Any] = {"Keys": list(chunk)}
        if consistent:
            request["ConsistentRead"] = True
        for item in batch_get(dynamodb, {table: request}, "reading stored events").get(table, []):
            found[(item["pk"]["S"], item["sk"]["S"])] = item
    return found


def _stored_items(
    dynamodb: Any, table: str, entries: list[TimeIndexEntry]
) -> dict[tuple[str, str], Any]:
    """The events items of `entries`, by (pk, sk).

    An entry comes from an index item that has not expired, and its event item expires at
    the same moment, so a missing event item is not yet visible rather than gone: the index
    item and the event item are written by one BatchWriteItem, in no guaranteed order, and
    these reads are eventually consistent. The missing ones are read again, consistently
    (rare, so nearly free); what is still missing is left out.
    """
    found = stored_items(dynamodb, table, [entry.event_key() for entry in entries])
    missing = [
        entry.event_key()
        for entry in entries
        if (entry.interaction_id, event_sort_key(entry.dedup_key)) not in found
    ]
    if missing:
        found.update(stored_items(dynamodb, table, missing, consistent=True))
    return found


def window(
    dynamodb: Any,
    tables: StoreTables,
    window_filter: WindowFilter,
    *,
    limit: int,
    after: str | None = None,
    max_bytes: int | None = RESPONSE_MAX_BYTES,
    max_examined: int = MAX_EXAMINED_PER_PAGE,
    now: datetime | None = None,
) -> WindowPage:
    """Stored events with since <= occurred_at < until, chronological, after `after`.

    `after` is a time_sort from an earlier page's `last_examined`.
    """
    if window_filter.interaction_id is not None:
        return _interaction_window(
            dynamodb, tables.events, window_filter, limit, after, max_bytes, now
        )
    return _indexed_window(
        dynamodb, tables, window_filter, limit, after, max_bytes, max_examined, now
    )


def _accepts(window_filter: WindowFilter, detail_type: str | None) -> bool:
    return window_filter.detail_type is None or detail_type == window_filter.detail_type


def _indexed_window(
    dynamodb: Any,
    tables: StoreTables,
    window_filter: WindowFilter,
    limit: int,
    after: str | None,
    max_bytes: int | None,
    max_examined: int,
    now: datetime | None,
) -> WindowPage:
    # Index entries carry the detail type, so a filtered window fetches only matching events;
    # the entries it skips cost index reads only (about 65 bytes each), at most `max_examined`.
    now_epoch = _epoch(now)
    # max(): a position before `since` (only a forged cursor could hold one) must not widen
    # the window.
    lower = max(after, window_filter.since) if after else window_filter.since
    stream = _IndexStream(dynamodb, tables, window_filter, lower, after, now_epoch)
    events: list[StoredEvent] = []
    last_examined: str | None = None
    examined = 0
    size = 0
    full = False
    while not full and len(events) < limit and examined < max_examined:
        wanted = min(limit - len(events), BATCH_GET_MAX_KEYS)
        stream.want(wanted)
        chunk: list[tuple[TimeIndexEntry, bool]] = []
        matching = 0
        while matching < wanted and examined + len(chunk) < max_examined:
            entry = stream.pop()
            if entry is None:
                break
            accepted = _accepts(window_filter, entry.detail_type)
            chunk.append((entry, accepted))
            matching += accepted
        if not chunk:
            break
        examined += len(chunk)
        wanted_entries = [entry for entry, accepted in chunk if accepted]
        items = _stored_items(dynamodb, tables.events, wanted_entries) if wanted_entries else {}
        for entry, accepted in chunk:
            item = items.get((entry.interaction_id, event_sort_key(entry.dedup_key)))
            # Still missing after a consistent read: its write did not happen; leave it out.
            if accepted and item is not None and not _expired(item, now_epoch):
                message = decode_message(item)
                size += json_size(message)
                if max_bytes is not None and events and size > max_bytes:
                    full = True  # this entry and the rest of the chunk go to the next page
                    break
                events.append(StoredEvent(entry.time_sort, message))
            last_examined = entry.time_sort
    # One more entry (at most one more second of index items) tells whether a next page would
    # find anything in the window; it may still be of another detail type.
    exhausted = not full and stream.peek() is None
    return WindowPage(events=events, last_examined=last_examined, exhausted=exhausted)


def _interaction_window(
    dynamodb: Any,
    table: str,
    window_filter: WindowFilter,
    limit: int,
    after: str | None,
    max_bytes: int | None,
    now: datetime | None,
) -> WindowPage:
    assert window_filter.interaction_id is not None
    now_epoch = _epoch(now)
    candidates = []
    for item in interaction_items(dynamodb, table, window_filter.interaction_id):
        occurred_at = order_fields(item).occurred_at
        position = stored_time_sort(item)
        in_window = window_filter.since <= occurred_at < window_filter.until
        if in_window and (after is None or position > after) and not _expired(item, now_epoch):
            candidates.append(item)
    candidates.sort(key=stored_time_sort)
    events: list[StoredEvent] = []
    last_examined: str | None = None
    size = 0
    for item in candidates:
        if len(events) == limit:
            return WindowPage(events, last_examined, exhausted=False)
        message = decode_message(item)
        if _accepts(window_filter, message.get("detail_type")):
            size += json_size(message)
            if max_bytes is not None and events and size > max_bytes:
                return WindowPage(events, last_examined, exhausted=False)
            events.append(StoredEvent(stored_time_sort(item), message))
        last_examined = stored_time_sort(item)
    return WindowPage(events, last_examined, exhausted=True)

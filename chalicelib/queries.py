"""Read-side queries over the event store: an interaction's timeline and time windows.

Only Query and BatchGetItem, never Scan (see store.py for the item layout):
- timeline: the interaction's partition (pk = interaction id), sorted by order key;
- window: the keys-only `by_time` index, one day bucket after another from `since` to
  `until`, then BatchGetItem for the items themselves, chronological by `time_sort`
  (occurred_at, interaction, order, event id);
- window with an interaction id: that interaction's partition instead, filtered to the window
  and sorted by `time_sort`, so the cost follows the interaction's size, not the window's
  traffic. Both window plans give the same order and the same positions, so a cursor from one
  page is valid whichever plan the next page uses.

A page holds at most `limit` events and stops early once the JSON of its events reaches
`max_bytes` (responses stay under 5 MB). Positions are exclusive ("continue after this"),
built from values the events themselves show. Reads are eventually consistent (half the read
units of strongly consistent ones): an event stored a moment ago may show up a moment later.
Items past their retention (expires_at) are left out even if TTL has not deleted them yet.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from chalicelib.ordering import sequence_key, sort_interaction, time_key
from chalicelib.store import EVENT_KEY_PREFIX, TIME_INDEX, decode_message

# API Gateway and Lambda allow 6 MB; the contract promises responses under 5 MB, and the
# envelope around the events (keys, cursor) needs a little room.
RESPONSE_MAX_BYTES = 5 * 1024 * 1024 - 16 * 1024
# BatchGetItem takes at most 100 keys.
BATCH_GET_MAX_KEYS = 100
# A window page stops after examining this many index entries even if few matched (a rare
# detail_type), so one request's cost and time stay bounded; the cursor continues from there.
MAX_EXAMINED_PER_PAGE = 5000
_UNPROCESSED_RETRIES = 8


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


@dataclass(frozen=True)
class _OrderFields:
    """What ordering needs of a stored item, from its plain attributes (no decompression)."""

    event_id: str
    sequence: int | None
    occurred_at: str


def _order_fields(item: dict[str, Any]) -> _OrderFields:
    seq = item.get("seq")
    return _OrderFields(
        event_id=item["event_id"]["S"],
        sequence=int(seq["N"]) if seq is not None else None,
        occurred_at=item["occurred_at"]["S"],
    )


def _position_of(item: dict[str, Any]) -> TimelinePosition:
    fields = _order_fields(item)
    sequence = sequence_key(fields) if fields.sequence is not None else None
    return TimelinePosition(sequence=sequence, time=time_key(fields))


def sort_timeline(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """Items in the pipeline's order-key order (ordering.sort_interaction), and whether
    sequences were the key (every event has one) or times were."""
    by_sequence = all(_order_fields(item).sequence is not None for item in items)
    return sort_interaction(items, _order_fields), by_sequence


def after_position(
    items: list[dict[str, Any]], by_sequence: bool, position: TimelinePosition
) -> list[dict[str, Any]]:
    """The sorted items strictly after `position`, compared with keys of the kind in use.

    The position carries both kinds, so it stays meaningful if the kind changed between pages
    (an event without a sequence arrived, or one expired).
    """
    if by_sequence and position.sequence is not None:
        return [i for i in items if sequence_key(_order_fields(i)) > position.sequence]
    return [i for i in items if time_key(_order_fields(i)) > position.time]


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


class _IndexReader:
    """Index entries of a time_sort range in order, across day buckets, read on demand.

    `take(n)` asks DynamoDB for no more than it needs (Limit = n), so a page reads the index
    entries it returns plus at most one to learn whether more exist.
    """

    def __init__(self, dynamodb: Any, table: str, lower: str, upper: str, skip: str | None):
        self._dynamodb = dynamodb
        self._table = table
        self._lower = lower
        # `until`, exclusive for occurred_at, works as BETWEEN's inclusive upper bound: a
        # time_sort starting with `until` itself is longer, hence greater, so it is left out.
        self._upper = upper
        self._skip = skip  # the exclusive start: the entry with this time_sort is left out
        self._buckets: Iterator[str] = iter(day_buckets(lower, _last_instant_before(upper)))
        self._bucket: str | None = None
        self._start_key: dict[str, Any] | None = None
        self.done = lower > upper

    def take(self, count: int) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        while len(entries) < count and not self.done:
            if self._bucket is None:
                self._bucket = next(self._buckets, None)
                self._start_key = None
                if self._bucket is None:
                    self.done = True
                    break
            request: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": TIME_INDEX,
                "KeyConditionExpression": "time_bucket = :bucket AND time_sort BETWEEN :lo AND :hi",
                "ExpressionAttributeValues": {
                    ":bucket": {"S": self._bucket},
                    ":lo": {"S": self._lower},
                    ":hi": {"S": self._upper},
                },
                "Limit": count - len(entries),
            }
            if self._start_key:
                request["ExclusiveStartKey"] = self._start_key
            response = self._dynamodb.query(**request)
            for entry in response.get("Items", []):
                if entry["time_sort"]["S"] != self._skip:
                    entries.append(entry)
            self._start_key = response.get("LastEvaluatedKey")
            if not self._start_key:
                self._bucket = None
        return entries


def batch_get(dynamodb: Any, table: str, keys: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """Items by (pk, sk); keys that no longer exist (expired and deleted) are simply absent."""
    found: dict[tuple[str, str], Any] = {}
    for start in range(0, len(keys), BATCH_GET_MAX_KEYS):
        pending: dict[str, Any] = {table: {"Keys": keys[start : start + BATCH_GET_MAX_KEYS]}}
        attempt = 0
        while pending:
            response = dynamodb.batch_get_item(RequestItems=pending)
            for item in response.get("Responses", {}).get(table, []):
                found[(item["pk"]["S"], item["sk"]["S"])] = item
            pending = response.get("UnprocessedKeys") or {}
            if pending:
                attempt += 1
                if attempt > _UNPROCESSED_RETRIES:
                    raise RuntimeError("DynamoDB left keys unprocessed after repeated retries")
                time.sleep(min(0.05 * 2**attempt, 1.0))  # throttled: back off, then retry
    return found


def window(
    dynamodb: Any,
    table: str,
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
        return _interaction_window(dynamodb, table, window_filter, limit, after, max_bytes, now)
    return _indexed_window(
        dynamodb, table, window_filter, limit, after, max_bytes, max_examined, now
    )


def _accepts(window_filter: WindowFilter, message: dict[str, Any]) -> bool:
    return (
        window_filter.detail_type is None or message.get("detail_type") == window_filter.detail_type
    )


def _indexed_window(
    dynamodb: Any,
    table: str,
    window_filter: WindowFilter,
    limit: int,
    after: str | None,
    max_bytes: int | None,
    max_examined: int,
    now: datetime | None,
) -> WindowPage:
    # The index holds keys only, so `detail_type` is known only once the item is fetched: a
    # window filtered to a rare detail type pays a read unit per 4 KB item for every event in
    # the window, matching or not (bounded per page by `max_examined`). Projecting
    # detail_type into the index would move that cost to every write instead.
    now_epoch = _epoch(now)
    # max(): a position before `since` (only a forged cursor could hold one) must not widen
    # the window.
    lower = max(after, window_filter.since) if after else window_filter.since
    reader = _IndexReader(dynamodb, table, lower=lower, upper=window_filter.until, skip=after)
    events: list[StoredEvent] = []
    last_examined: str | None = None
    examined = 0
    size = 0
    full = False
    while not full and len(events) < limit and examined < max_examined:
        entries = reader.take(min(limit - len(events), BATCH_GET_MAX_KEYS, max_examined - examined))
        if not entries:
            break
        examined += len(entries)
        items = batch_get(dynamodb, table, [{"pk": e["pk"], "sk": e["sk"]} for e in entries])
        for entry in entries:
            item = items.get((entry["pk"]["S"], entry["sk"]["S"]))
            if item is not None and not _expired(item, now_epoch):
                message = decode_message(item)
                if _accepts(window_filter, message):
                    size += json_size(message)
                    if max_bytes is not None and events and size > max_bytes:
                        full = True  # this entry and the rest of the chunk go to the next page
                        break
                    events.append(StoredEvent(entry["time_sort"]["S"], message))
            last_examined = entry["time_sort"]["S"]
    if full:
        exhausted = False
    elif reader.done:
        exhausted = True
    else:
        # One more index entry (at most) tells whether a next page would find anything.
        exhausted = not reader.take(1)
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
        occurred_at = item["occurred_at"]["S"]
        position = item["time_sort"]["S"]
        in_window = window_filter.since <= occurred_at < window_filter.until
        if in_window and (after is None or position > after) and not _expired(item, now_epoch):
            candidates.append(item)
    candidates.sort(key=lambda item: item["time_sort"]["S"])
    events: list[StoredEvent] = []
    last_examined: str | None = None
    size = 0
    for item in candidates:
        if len(events) == limit:
            return WindowPage(events, last_examined, exhausted=False)
        message = decode_message(item)
        if _accepts(window_filter, message):
            size += json_size(message)
            if max_bytes is not None and events and size > max_bytes:
                return WindowPage(events, last_examined, exhausted=False)
            events.append(StoredEvent(item["time_sort"]["S"], message))
        last_examined = item["time_sort"]["S"]
    return WindowPage(events, last_examined, exhausted=True)

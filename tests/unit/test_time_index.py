"""The time index's items (store.time_index_items) and the pure parts of reading them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from benchmarks.accounting import item_size, write_units
from chalicelib.store import layout as store
from chalicelib.store.queries import WindowFilter, query_limit, second_entries

NOW = datetime(2026, 11, 29, 9, 0, 5, tzinfo=UTC)
STAGE_CHANGED = "Interaction.Lifecycle.StageChanged"
ROUTING = "Routing.StateChanged"


def message(
    occurred_at: str,
    *,
    interaction_id: str = "int-20261129-73cf-000008",
    sequence: int | None = 3,
    event_id: str | None = None,
    detail_type: str = STAGE_CHANGED,
) -> dict[str, Any]:
    """The fields of a delivered message the index reads (the rest does not reach it)."""
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "interaction_id": interaction_id,
        "detail_type": detail_type,
        "sequence": sequence,
        "occurred_at": occurred_at,
    }


def items_of(pairs: list[tuple[dict[str, Any], str]], shards: int = 4) -> list[dict[str, Any]]:
    return store.time_index_items(pairs, shards=shards, retention_days=30, now=NOW)


def with_own_keys(messages: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    return [(m, m["event_id"]) for m in messages]


def test_one_item_per_second_holding_that_seconds_entries_in_order() -> None:
    seconds = ["2026-11-29T09:00:01", "2026-11-29T09:00:02", "2026-11-29T09:00:04"]
    batch = [
        message(f"{seconds[n % 3]}.{900 - n * 10:03d}Z", interaction_id=f"int-{n % 4}")
        for n in range(10)
    ]
    pairs = [(m, f"provider-{m['event_id']}") for m in batch]  # dedup keys of their own

    items = items_of(pairs)

    assert [store.time_index_second(item) for item in items] == seconds
    for second, item in zip(seconds, items, strict=True):
        assert item["pk"]["S"].startswith(second[:10] + "#")
        assert item["sk"]["S"].startswith(second + "#")
        entries = store.decode_time_index_item(item)
        wanted = sorted(
            (m for m, _ in pairs if m["occurred_at"].startswith(second)), key=store.time_sort
        )
        assert [e.time_sort for e in entries] == [store.time_sort(m) for m in wanted]
        assert [e.occurred_at for e in entries] == [m["occurred_at"] for m in wanted]
        assert [e.interaction_id for e in entries] == [m["interaction_id"] for m in wanted]
        assert [e.dedup_key for e in entries] == [f"provider-{m['event_id']}" for m in wanted]
        assert [e.event_key() for e in entries] == [
            store.event_key(m["interaction_id"], f"provider-{m['event_id']}") for m in wanted
        ]


def test_entries_rebuild_time_sort_and_keys_exactly() -> None:
    odd = [
        message("2026-11-29T09:00:01.000Z", sequence=None, interaction_id="a#b", event_id="e#1"),
        message("2026-11-29T09:00:01.000Z", sequence=0, interaction_id="ä/ 1", event_id="e2"),
        message("2026-11-29T09:00:01.999Z", sequence=10**15, detail_type=ROUTING),
    ]
    (item,) = items_of([(odd[0], "e#1"), (odd[1], "other|key#x"), (odd[2], odd[2]["event_id"])])
    entries = {e.time_sort: e for e in store.decode_time_index_item(item)}
    assert set(entries) == {store.time_sort(m) for m in odd}
    first, second, third = (entries[store.time_sort(m)] for m in odd)
    assert (first.interaction_id, first.dedup_key) == ("a#b", "e#1")
    assert (second.interaction_id, second.dedup_key) == ("ä/ 1", "other|key#x")
    assert (third.detail_type, third.dedup_key) == (ROUTING, odd[2]["event_id"])


def test_a_batch_of_ten_in_one_second_is_one_write_unit() -> None:
    # Realistic CXone ids: uuid event ids, provider event ids as dedup keys, long interaction
    # ids, both detail types. A GSI entry per event would be 10 write units.
    batch = [
        message(
            f"2026-11-29T09:00:01.{n * 97:03d}Z",
            interaction_id=f"int-20261129-{uuid.uuid4().hex[:4]}-{n:06d}",
            sequence=n,
            detail_type=ROUTING if n % 3 == 0 else STAGE_CHANGED,
        )
        for n in range(10)
    ]
    (item,) = items_of([(m, str(uuid.uuid4())) for m in batch])
    assert item_size(item) <= 1024
    assert write_units(item_size(item)) == 1
    assert len(store.decode_time_index_item(item)) == 10


def test_expires_with_the_store_retention() -> None:
    (item,) = items_of(with_own_keys([message("2026-11-29T09:00:01.000Z")]))
    assert int(item["expires_at"]["N"]) == int((NOW + timedelta(days=30)).timestamp())


def test_shards_stay_in_range_and_are_all_used() -> None:
    shards = 4
    partitions = set()
    for n in range(200):
        batch = [message(f"2026-11-29T09:{n // 60:02d}:{n % 60:02d}.{k:03d}Z") for k in range(3)]
        for item in items_of(with_own_keys(batch), shards=shards):
            day, shard = item["pk"]["S"].split("#")
            assert day == "2026-11-29"
            partitions.add(int(shard))
    assert partitions == set(range(shards))
    assert {
        item["pk"]["S"]
        for item in items_of(with_own_keys([message("2026-11-29T09:00:00.000Z")]), shards=1)
    } == {"2026-11-29#0"}


def test_the_same_batch_gives_the_same_items_and_repeats_are_indexed_once() -> None:
    batch = [message(f"2026-11-29T09:00:01.{n:03d}Z") for n in range(4)]
    once = items_of(with_own_keys(batch))
    again = items_of(with_own_keys(list(reversed(batch)) + batch[:2]))
    # A retried settle overwrites its item instead of adding a copy.
    assert [(i["pk"], i["sk"]) for i in again] == [(i["pk"], i["sk"]) for i in once]
    assert len(store.decode_time_index_item(again[0])) == 4


def test_a_crowded_second_is_split_into_bounded_items() -> None:
    count = store.MAX_ENTRIES_PER_INDEX_ITEM * 2 + 5
    batch = [
        message(f"2026-11-29T09:00:01.{n % 1000:03d}Z", event_id=f"e{n}") for n in range(count)
    ]
    items = items_of(with_own_keys(batch))
    assert len(items) == 3
    assert len({item["sk"]["S"] for item in items}) == 3
    entries = [e for item in items for e in store.decode_time_index_item(item)]
    assert sorted(e.time_sort for e in entries) == sorted(store.time_sort(m) for m in batch)


# ---- reading -------------------------------------------------------------------------------

WINDOW = WindowFilter(since="2026-11-29T09:00:01.002Z", until="2026-11-29T09:00:01.008Z")


def test_second_entries_sorts_filters_and_drops_repeats() -> None:
    batch = [message(f"2026-11-29T09:00:01.{n:03d}Z", event_id=f"e{n}") for n in range(10)]
    first = items_of(with_own_keys(batch[0:6:2] + batch[5:]))
    second = items_of(with_own_keys(batch[1:6:2] + batch[3:5]))  # e3, e4 indexed twice
    entries = [e for item in first + second for e in store.decode_time_index_item(item)]
    after = store.time_sort(batch[3])

    kept = second_entries(entries, WINDOW, after=None)
    assert [e.time_sort for e in kept] == [store.time_sort(m) for m in batch[2:8]]
    kept = second_entries(entries, WINDOW, after=after)
    assert [e.time_sort for e in kept] == [store.time_sort(m) for m in batch[4:8]]


@given(
    wanted=st.integers(min_value=0, max_value=5000),
    shards=st.integers(min_value=1, max_value=64),
    entries_per_item=st.floats(min_value=0.0, max_value=500.0),
)
def test_query_limit_is_bounded_and_covers_a_shards_share(
    wanted: int, shards: int, entries_per_item: float
) -> None:
    limit = query_limit(wanted, shards, entries_per_item)
    assert 2 <= limit <= 100
    if limit < 100:
        # Enough items for this shard's share of the wanted entries, and one to spare.
        assert (limit - 1) * shards * max(entries_per_item, 1.0) >= wanted - 1e-9


# ---- events items: compact layout -------------------------------------------------------------


@given(
    interaction_id=st.text(min_size=1, max_size=64),
    event_id=st.text(min_size=1, max_size=128),
    sequence=st.one_of(st.none(), st.integers(min_value=0, max_value=10**15)),
    millisecond=st.integers(min_value=0, max_value=86_399_999),
)
def test_events_item_round_trips_and_stores_each_field_once(
    interaction_id: str, event_id: str, sequence: int | None, millisecond: int
) -> None:
    occurred = datetime(2026, 11, 29, tzinfo=UTC) + timedelta(milliseconds=millisecond)
    original = {
        **message(
            occurred.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millisecond % 1000:03d}Z",
            interaction_id=interaction_id,
            sequence=sequence,
            event_id=event_id,
        ),
        "received_at": "2026-11-29T09:00:06.000Z",
        "late": False,
        "event": {"id": event_id, "detail": {"note": "é#" * 20}},
    }
    item = store.event_item(
        original, dedup_key="k#1", payload_sha256="0" * 64, retention_days=30, now=NOW
    )
    assert set(item) == {"pk", "sk", "t", "m", "sha", "expires_at"}
    assert store.decode_message(item) == original
    fields = store.order_fields(item)
    assert (fields.occurred_at, fields.sequence, fields.event_id) == (
        original["occurred_at"],
        sequence,
        event_id,
    )
    # The compressed part holds none of what the key and time_sort already say.
    rest = store.json_blob(item["m"]["B"])
    assert not {"interaction_id", "occurred_at", "sequence", "event_id"} & set(rest)


def test_a_large_event_is_stored_in_fewer_write_units_than_its_json() -> None:
    words = " ".join(f"utterance {n} about the invoice and the refund" for n in range(120))
    original = {
        **message("2026-11-29T09:00:01.250Z"),
        "event": {"detail": {"eventBody": {"transcripts": [{"utteranceText": words}]}}},
    }
    item = store.event_item(
        original, dedup_key="k", payload_sha256="0" * 64, retention_days=30, now=NOW
    )
    plain = len(json.dumps(original).encode())
    assert write_units(item_size(item)) <= 0.6 * write_units(plain)

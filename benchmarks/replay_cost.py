"""Replay page cost against the size of the event store.

Stored events are written straight into a stage's tables as the ingest pipeline's settle
writes them (`store.event_item` per event, `store.time_index_items` per batch of 10), by
parallel BatchWriteItem calls outside any measurement; then one window page is read through
`chalicelib.store.queries.window` on a recorded session and billed. A page must cost the same
whether the store holds 10,000 or 100,000 events: the time index is read from the window's
start (or the cursor's second) and only as far as the page needs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config

from benchmarks.harness import REGION, fresh_stage, relay_settings
from benchmarks.implementations.ours import provision
from benchmarks.metering import CallRecorder, bill, describe_tables
from chalicelib.formats import rfc3339, sha256_hex, utc_now
from chalicelib.model import InvalidEvent, delivered_message
from chalicelib.providers.validation import validate_record
from chalicelib.store.layout import StoreTables, event_item, time_index_items, time_sort
from chalicelib.store.queries import WindowFilter, window
from scripts.traffic.simulate import generate_traffic

PAGE_LIMIT = 100
STORE_START = datetime(2026, 11, 2, tzinfo=UTC)  # one day bucket holds the whole store
EVENT_GAP = timedelta(milliseconds=250)
EVENTS_PER_INTERACTION = 8
WRITE_BATCH = 25
SETTLE_BATCH = 10  # events per ingest batch: one time-index item per second of each
WRITER_THREADS = 4


def message_templates(settings: Any, count: int = 200) -> list[dict[str, Any]]:
    """Delivered messages of realistic simulated events, to copy stored events from."""
    templates = []
    for item in generate_traffic(count, seed=11):
        event = validate_record(json.dumps(item.event), settings)
        if not isinstance(event, InvalidEvent):
            templates.append(delivered_message(event, received_at=rfc3339(utc_now()), late=False))
    return templates


def stored_message(index: int, templates: Sequence[dict[str, Any]]) -> dict[str, Any]:
    occurred = rfc3339(STORE_START + index * EVENT_GAP)
    return {
        **templates[index % len(templates)],
        "event_id": f"stored-{index:08d}",
        "interaction_id": f"int-store-{index // EVENTS_PER_INTERACTION:07d}",
        "sequence": index % EVENTS_PER_INTERACTION,
        "occurred_at": occurred,
        "received_at": occurred,
    }


def _writes(
    tables: StoreTables, first: int, last: int, templates: Sequence[dict[str, Any]], now: datetime
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table, item) for stored events `first`..`last - 1`, settled in batches of 10."""
    for start in range(first, last, SETTLE_BATCH):
        batch = [
            stored_message(i, templates) for i in range(start, min(start + SETTLE_BATCH, last))
        ]
        for message in batch:
            item = event_item(
                message,
                dedup_key=message["event_id"],
                payload_sha256=sha256_hex(message["event_id"]),
                retention_days=30,
                now=now,
            )
            yield tables.events, item
        for item in time_index_items(
            [(message, message["event_id"]) for message in batch],
            shards=tables.time_index_shards,
            retention_days=30,
            now=now,
        ):
            yield tables.time_index, item


def fill(tables: StoreTables, first: int, last: int, templates: Sequence[dict[str, Any]]) -> None:
    """Write stored events `first`..`last - 1` with parallel BatchWriteItem calls."""
    dynamodb = boto3.Session(region_name=REGION).client(
        "dynamodb", config=Config(max_pool_connections=WRITER_THREADS * 2)
    )
    writes = list(_writes(tables, first, last, templates, utc_now()))

    def write(chunk: list[tuple[str, dict[str, Any]]]) -> None:
        request: dict[str, list[dict[str, Any]]] = {}
        for table, item in chunk:
            request.setdefault(table, []).append({"PutRequest": {"Item": item}})
        while request:
            request = dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems")

    chunks = [writes[i : i + WRITE_BATCH] for i in range(0, len(writes), WRITE_BATCH)]
    with ThreadPoolExecutor(max_workers=WRITER_THREADS) as pool:
        list(pool.map(write, chunks))


def measure_page(tables: StoreTables, after: str | None) -> dict[str, Any]:
    """Read one window page (the whole store's day, `limit` 100) and bill it."""
    recorder = CallRecorder()
    session = boto3.Session(region_name=REGION)
    recorder.attach(session)
    dynamodb = session.client("dynamodb")
    window_filter = WindowFilter(
        since=rfc3339(STORE_START), until=rfc3339(STORE_START + timedelta(days=1))
    )
    started = time.perf_counter()
    page = window(dynamodb, tables, window_filter, limit=PAGE_LIMIT, after=after)
    seconds = time.perf_counter() - started
    recorder.enabled = False
    shapes = describe_tables(boto3.Session().client("dynamodb"), [tables.events, tables.time_index])
    charges = bill(recorder.calls, shapes)
    return {
        "events_returned": len(page.events),
        "read_units": charges.read_units,
        "requests": dict(charges.operations),
        "seconds": seconds,
    }


def replay_page_cost(sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Page cost (first page and a page from the middle of the store) at each store size."""
    settings = relay_settings(fresh_stage("r"))
    provision(boto3.Session(region_name=REGION), settings)
    tables = StoreTables.of(settings)
    templates = message_templates(settings)
    results = []
    stored = 0
    for size in sorted(sizes):
        fill(tables, stored, size, templates)
        stored = size
        middle = time_sort(stored_message(size // 2, templates))
        results.append(
            {
                "stored_events": size,
                "first_page": measure_page(tables, after=None),
                "middle_page": measure_page(tables, after=middle),
            }
        )
    return results

"""The REST replay API through chalice.test.Client, over a stage provisioned on moto.

The event store is seeded with items made by `store.event_item` and
`store.time_index_items`, exactly as the ingest pipeline writes them
(tests.support.helpers.seed_store).
"""

from __future__ import annotations

import io
import json
import math
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from chalice import Chalice
from chalice.test import Client

from chalicelib.api.blueprint import api
from chalicelib.formats import rfc3339, utc_now
from chalicelib.runtime import Runtime, reset_runtime
from chalicelib.store import layout as store
from tests.support.helpers import DELIVERED_FIELDS, seed_store
from tests.support.replay_stage import (
    ROUTING,
    STAGE_CHANGED,
    at,
    delivered,
    make_client,
    runtime_of,
    seed,
    seed_legacy,
    shared_stage_environment,
)


@pytest.fixture(scope="module")
def shared_stage_env(aws_endpoint: str) -> Iterator[dict[str, str]]:
    with shared_stage_environment() as env:
        yield env


@pytest.fixture
def stage(shared_stage_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The module's shared stage, for the read-only tests."""
    yield from runtime_of(shared_stage_env, monkeypatch)


@pytest.fixture
def client(stage: Runtime) -> Iterator[Client]:
    yield from make_client()


@pytest.fixture
def own_client(provisioned: Runtime) -> Iterator[Client]:
    """A client over a stage of the test's own (for tests that fill the table)."""
    yield from make_client()


@pytest.fixture
def bare_client(relay_env: dict[str, str]) -> Iterator[Client]:
    """A client over a stage that is not provisioned: enough for requests refused before any
    AWS call (a 400 from parameter checks), and much faster than provisioning."""
    reset_runtime()
    try:
        yield from make_client()
    finally:
        reset_runtime()


def get_json(client: Client, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    url = path + ("?" + urlencode(params) if params else "")
    response = client.http.get(url)
    return response.status_code, json.loads(response.body)


def walk(client: Client, path: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every event of a paged listing, and how many pages it took."""
    events: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        status, body = get_json(client, path, **query)
        assert status == 200, body
        pages += 1
        events.extend(body["events"])
        cursor = body["next_cursor"]
        if cursor is None:
            return events, pages
        assert pages < 1000, "the listing never ends"


# ---- timeline -------------------------------------------------------------------------------

BASE = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def test_timeline_is_complete_and_in_sequence_order_across_pages(
    client: Client, stage: Runtime
) -> None:
    # Sequence order deliberately differs from time order and from write order: sequence wins.
    sequences = [4, 1, 7, 2, 6, 3, 5, 0]
    messages = [
        delivered("int-A", f"ev-{s}", at(BASE, 100 - 10 * s), sequence=s) for s in sequences
    ]
    seed(stage, [*messages, delivered("int-B", "other", at(BASE, 1), sequence=1)])

    events, pages = walk(client, "/interactions/int-A/events", limit=3)

    assert [e["sequence"] for e in events] == sorted(sequences)
    assert pages == 3
    assert {e["interaction_id"] for e in events} == {"int-A"}
    assert all(set(e) == DELIVERED_FIELDS for e in events)  # no table keys leak out
    assert events[0] == next(m for m in messages if m["sequence"] == 0)


def test_timeline_orders_by_time_when_some_events_lack_a_sequence(
    client: Client, stage: Runtime
) -> None:
    seed(
        stage,
        [
            delivered("int-M", "b", at(BASE, 2), sequence=1),
            delivered("int-M", "a", at(BASE, 3)),  # no sequence: the whole timeline goes by time
            delivered("int-M", "c", at(BASE, 1), sequence=9),
            delivered("int-M", "d", at(BASE, 2), sequence=0),  # tie on time: by event id
        ],
    )
    status, body = get_json(client, "/interactions/int-M/events")
    assert status == 200
    assert [e["event_id"] for e in body["events"]] == ["c", "b", "d", "a"]
    assert body["next_cursor"] is None


def test_items_of_the_earlier_layout_stay_readable(client: Client, stage: Runtime) -> None:
    """Events stored before the compact layout (time_sort, msg compressed or plain JSON,
    occurred_at/event_id/seq beside it) are served by the timeline and both window plans,
    in order among new items, with their messages unchanged."""
    day = datetime(2026, 12, 9, 9, 0, tzinfo=UTC)
    messages = [
        delivered("int-legacy#1", f"lg-{n}", at(day, n), sequence=n, late=n == 3) for n in range(6)
    ]
    seed(stage, messages[0::2])
    seed_legacy(stage, messages[1::2])  # one compressed, one plain, one compressed

    timeline, _ = walk(client, f"/interactions/{quote('int-legacy#1', safe='')}/events", limit=2)
    assert timeline == messages

    since, until = at(day, -1), at(day, 60)
    window, _ = walk(client, "/replay", since=since, until=until, limit=4)
    assert window == messages
    one, _ = walk(
        client, "/replay", since=since, until=until, interaction_id="int-legacy#1", limit=4
    )
    assert one == messages


def test_timeline_of_unknown_interaction_is_empty(client: Client) -> None:
    status, body = get_json(client, "/interactions/nobody/events")
    assert (status, body) == (200, {"events": [], "next_cursor": None})


def test_timeline_path_with_special_characters(client: Client, stage: Runtime) -> None:
    interaction = "v2.users/ä 1"
    seed(stage, [delivered(interaction, "x1", at(BASE, 0))])
    status, body = get_json(client, f"/interactions/{quote(interaction, safe='')}/events")
    assert status == 200
    assert [e["event_id"] for e in body["events"]] == ["x1"]


# ---- window ---------------------------------------------------------------------------------

NIGHT = datetime(2026, 11, 29, 22, 0, tzinfo=UTC)  # the window spans midnight: two day buckets


def _window_messages(night: datetime = NIGHT, prefix: str = "int") -> list[dict[str, Any]]:
    messages = []
    for n in range(40):
        interaction = f"{prefix}-{n % 4}"
        detail_type = ROUTING if n % 3 == 0 else STAGE_CHANGED
        # 40 events, 9 minutes apart: 22:00 to 03:51, across midnight.
        messages.append(
            delivered(interaction, f"w{n:02d}", at(night, n * 540), detail_type=detail_type)
        )
    # Two events at the same millisecond in different interactions.
    messages.append(delivered(f"{prefix}-1", "same-a", at(night, 3600)))
    messages.append(delivered(f"{prefix}-2", "same-b", at(night, 3600)))
    return messages


def test_paged_window_walk_returns_every_event_once_chronologically(
    client: Client, stage: Runtime
) -> None:
    messages = _window_messages()
    since, until = at(NIGHT, 0), at(NIGHT, 39 * 540)  # since inclusive, until exclusive
    outside = [
        delivered("int-0", "before", at(NIGHT, -0.001)),
        delivered("int-0", "at-until", until),
        delivered("int-0", "next-day", at(NIGHT, 86400)),
    ]
    seed(stage, messages + outside)
    inside = [m for m in messages if since <= m["occurred_at"] < until]

    events, pages = walk(client, "/replay", since=since, until=until, limit=4)

    assert [e["event_id"] for e in events] == [
        m["event_id"] for m in sorted(inside, key=store.time_sort)
    ]
    assert len({e["event_id"] for e in events}) == len(events) == 42 - 1  # w39 is at until
    assert [e["occurred_at"] for e in events] == sorted(e["occurred_at"] for e in events)
    assert {e["occurred_at"][:10] for e in events} == {"2026-11-29", "2026-11-30"}
    assert pages == math.ceil(len(inside) / 4)


def test_window_filters_by_detail_type_and_interaction(client: Client, stage: Runtime) -> None:
    night = datetime(2026, 12, 5, 22, 0, tzinfo=UTC)
    messages = _window_messages(night, prefix="flt")
    seed(stage, messages)
    since, until = at(night, -1), at(night, 86400)

    routing, _ = walk(client, "/replay", since=since, until=until, detail_type=ROUTING, limit=3)
    assert [e["event_id"] for e in routing] == [
        m["event_id"] for m in sorted(messages, key=store.time_sort) if m["detail_type"] == ROUTING
    ]

    one, _ = walk(client, "/replay", since=since, until=until, interaction_id="flt-1", limit=2)
    assert [e["event_id"] for e in one] == [
        m["event_id"]
        for m in sorted(messages, key=store.time_sort)
        if m["interaction_id"] == "flt-1"
    ]

    both, _ = walk(
        client,
        "/replay",
        since=since,
        until=until,
        interaction_id="flt-0",
        detail_type=ROUTING,
        limit=2,
    )
    assert [e["event_id"] for e in both] == [
        m["event_id"]
        for m in sorted(messages, key=store.time_sort)
        if m["interaction_id"] == "flt-0" and m["detail_type"] == ROUTING
    ]


def test_since_and_until_with_offsets_and_fractions_are_exact(
    client: Client, stage: Runtime
) -> None:
    seed(
        stage,
        [
            delivered("int-T", "t1", "2026-10-01T09:00:00.000Z"),
            delivered("int-T", "t2", "2026-10-01T09:00:00.001Z"),
            delivered("int-T", "t3", "2026-10-01T09:00:00.002Z"),
        ],
    )
    # 10:00:00.0005+01:00 is 09:00:00.0005Z: t1 is before it, t3 is not before the until.
    status, body = get_json(
        client,
        "/replay",
        since="2026-10-01T10:00:00.0005+01:00",
        until="2026-10-01T09:00:00.002Z",
    )
    assert status == 200, body
    assert [e["event_id"] for e in body["events"]] == ["t2"]


def _index_partitions_of_second(runtime: Runtime, second: str) -> set[str]:
    """The time-index partitions ("<day>#<shard>") holding items of one second."""
    partitions = set()
    for shard in range(runtime.settings.time_index_shards):
        partition = f"{second[:10]}#{shard}"
        response = runtime.dynamodb.query(
            TableName=runtime.settings.names.time_index_table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :second)",
            ExpressionAttributeValues={":pk": {"S": partition}, ":second": {"S": second}},
        )
        if response["Items"]:
            partitions.add(partition)
    return partitions


@pytest.mark.parametrize("limit", [1, 2, 7])
def test_events_of_one_second_across_shards_and_batches_page_in_order(
    client: Client, stage: Runtime, limit: int
) -> None:
    # 25 events in one second (from 13 interactions, so ordering inside the second is by
    # time, then interaction), 3 in the seconds around it, stored by batches of 3 in an order
    # unrelated to time: the busy second's entries end up in items of several batches, under
    # several shards, and every page must still be chronological.
    day = datetime(2026, 9, 1 + limit, 12, 0, 0, tzinfo=UTC)
    busy = [
        delivered(f"sec-{n % 13:02d}", f"b{n:02d}-{limit}", at(day, 1 + (n % 5) / 1000))
        for n in range(25)
    ]
    around = [delivered("sec-x", f"a{n}-{limit}", at(day, n * 2 + 0.5)) for n in range(2)]
    late = [delivered("sec-y", f"z-{limit}", at(day, 2.999), sequence=4)]
    messages = busy + around + late
    order = sorted(range(len(messages)), key=lambda n: (n * 17) % len(messages))
    seed_store(stage.dynamodb, stage.settings, [messages[n] for n in order], batch_size=3)
    assert len(_index_partitions_of_second(stage, at(day, 1)[:19])) > 1

    # A settle retried with another batch composition indexes an event a second time; an
    # index entry whose event item was never written (its write lost) is left out.
    orphan = delivered("sec-o", f"orphan-{limit}", at(day, 1.004))
    writes = store.time_index_items(
        [(busy[3], busy[3]["event_id"]), (busy[8], busy[8]["event_id"]), (orphan, "orphan")],
        shards=stage.settings.time_index_shards,
        retention_days=stage.settings.store_retention_days,
        now=utc_now(),
    )
    for item in writes:
        stage.dynamodb.put_item(TableName=stage.settings.names.time_index_table, Item=item)

    since, until = at(day, 0), at(day, 60)
    events, pages = walk(client, "/replay", since=since, until=until, limit=limit)

    expected = [m["event_id"] for m in sorted(messages, key=store.time_sort)]
    assert [e["event_id"] for e in events] == expected
    assert pages == math.ceil(len(expected) / limit)

    routing = delivered("sec-r", f"r-{limit}", at(day, 1.002), detail_type=ROUTING)
    seed(stage, [routing])
    only_routing, _ = walk(
        client, "/replay", since=since, until=until, detail_type=ROUTING, limit=limit
    )
    assert [e["event_id"] for e in only_routing] == [routing["event_id"]]


def test_a_page_stops_under_the_size_budget_and_still_has_a_cursor(
    client: Client, stage: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.store import queries

    day = datetime(2026, 10, 2, tzinfo=UTC)
    messages = [delivered("int-S", f"s{n}", at(day, n)) for n in range(6)]
    seed(stage, messages)
    one_event = queries.json_size(messages[0])
    monkeypatch.setattr(queries, "RESPONSE_MAX_BYTES", int(one_event * 2.5))

    status, body = get_json(client, "/replay", since=at(day, 0), until=at(day, 60), limit=100)
    assert status == 200
    assert len(body["events"]) == 2
    assert body["next_cursor"] is not None
    events, _ = walk(client, "/replay", since=at(day, 0), until=at(day, 60))
    assert [e["event_id"] for e in events] == [m["event_id"] for m in messages]


# ---- errors ---------------------------------------------------------------------------------

SINCE = "2026-11-29T09:00:00Z"
UNTIL = "2026-11-29T10:00:00Z"


@pytest.mark.parametrize(
    ("params", "parameter", "says"),
    [
        ({"until": UNTIL}, "since", "required"),
        ({"since": SINCE}, "until", "required"),
        ({"since": SINCE, "until": SINCE}, "until", "later than since"),
        ({"since": UNTIL, "until": SINCE}, "until", "later than since"),
        ({"since": "2026-11-29 09:00:00", "until": UNTIL}, "since", "RFC 3339"),
        ({"since": "2026-11-29T09:00:00", "until": UNTIL}, "since", "RFC 3339"),
        ({"since": SINCE, "until": "2026-11-29"}, "until", "RFC 3339"),
        ({"since": SINCE, "until": "2026-02-30T10:00:00Z"}, "until", "not a real date"),
        ({"since": SINCE, "until": UNTIL, "limit": "0"}, "limit", "1 to 1000"),
        ({"since": SINCE, "until": UNTIL, "limit": "1001"}, "limit", "1 to 1000"),
        ({"since": SINCE, "until": UNTIL, "limit": "x"}, "limit", "1 to 1000"),
        ({"since": SINCE, "until": UNTIL, "limit": "2.5"}, "limit", "1 to 1000"),
        ({"since": SINCE, "until": "2026-12-29T09:00:01Z"}, "until", "retention"),
        ({"since": SINCE, "until": UNTIL, "detail_type": ""}, "detail_type", "1-256"),
        ({"since": SINCE, "until": UNTIL, "interaction_id": "x" * 129}, "interaction_id", "1-128"),
        ({"since": SINCE, "until": UNTIL, "limt": "5"}, "limt", "not a parameter"),
        ({"since": SINCE, "until": UNTIL, "cursor": "garbage"}, "cursor", "not a cursor"),
    ],
)
def test_bad_window_parameters_are_400_naming_the_parameter(
    bare_client: Client, params: dict[str, str], parameter: str, says: str
) -> None:
    status, body = get_json(bare_client, "/replay", **params)
    assert status == 400
    assert body["Code"] == "BadRequestError"
    assert body["Message"].startswith(f"{parameter}: ") or f"; {parameter}: " in body["Message"]
    assert says in body["Message"]


def test_repeated_parameter_is_400(bare_client: Client) -> None:
    response = bare_client.http.get(f"/replay?since={SINCE}&until={UNTIL}&limit=5&limit=6")
    assert response.status_code == 400
    assert json.loads(response.body)["Message"].startswith("limit: ")


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("limit=0", "limit"), ("limit=abc", "limit"), ("cursor=AAAA.BBBB", "cursor")],
)
def test_bad_timeline_parameters_are_400(bare_client: Client, query: str, parameter: str) -> None:
    response = bare_client.http.get(f"/interactions/int-A/events?{query}")
    assert response.status_code == 400
    assert json.loads(response.body)["Message"].startswith(f"{parameter}: ")


def test_long_interaction_id_in_path_is_400(bare_client: Client) -> None:
    response = bare_client.http.get(f"/interactions/{'i' * 129}/events")
    assert response.status_code == 400
    assert json.loads(response.body)["Message"].startswith("interaction_id: ")


def _first_cursor(client: Client, **params: Any) -> str:
    status, body = get_json(client, "/replay", **params)
    assert status == 200 and body["next_cursor"], body
    return body["next_cursor"]


def test_tampered_and_reused_cursors_are_400(client: Client, stage: Runtime) -> None:
    day = datetime(2026, 10, 3, tzinfo=UTC)
    seed(stage, [delivered("int-C", f"c{n}", at(day, n)) for n in range(5)])
    params = {"since": at(day, 0), "until": at(day, 60), "limit": 2}
    cursor = _first_cursor(client, **params)

    payload, signature = cursor.split(".")
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    for bad in (f"{flipped}.{signature}", cursor[:-2], cursor + "x", f"{payload}.{payload}"):
        status, body = get_json(client, "/replay", **params, cursor=bad)
        assert status == 400, bad
        assert body["Message"].startswith("cursor: ")
        assert "altered" in body["Message"]

    for other in ({"until": at(day, 61)}, {"detail_type": ROUTING}, {"interaction_id": "int-C"}):
        status, body = get_json(client, "/replay", **{**params, **other}, cursor=cursor)
        assert status == 400, other
        assert body["Message"].startswith("cursor: ")
        assert "other filters" in body["Message"]

    # A listing cursor is not a timeline cursor, and a timeline cursor of one interaction does
    # not page another.
    status, body = get_json(client, "/interactions/int-C/events", cursor=cursor)
    assert status == 400 and body["Message"].startswith("cursor: ")
    status, body = get_json(client, "/interactions/int-C/events", limit=1)
    status, body = get_json(client, "/interactions/int-D/events", cursor=body["next_cursor"])
    assert status == 400 and "other filters" in body["Message"]

    # The page size may change between pages: it is not a filter.
    status, body = get_json(client, "/replay", **{**params, "limit": 3}, cursor=cursor)
    assert status == 200
    assert [e["event_id"] for e in body["events"]] == ["c2", "c3", "c4"]


def test_cursor_key_comes_from_the_stages_cursor_key_secret(client: Client, stage: Runtime) -> None:
    day = datetime(2026, 10, 4, tzinfo=UTC)
    seed(stage, [delivered("int-K", f"k{n}", at(day, n)) for n in range(3)])
    params = {"since": at(day, 0), "until": at(day, 60), "limit": 1}
    cursor = _first_cursor(client, **params)
    assert get_json(client, "/replay", **params, cursor=cursor)[0] == 200
    # Rotated, and read again once the cached key expires (a new runtime: a cold start).
    stage.secretsmanager.put_secret_value(
        SecretId=stage.settings.names.cursor_key_secret, SecretString="rotated " + "k" * 56
    )
    reset_runtime()
    status, body = get_json(client, "/replay", **params, cursor=cursor)
    assert status == 400 and body["Message"].startswith("cursor: ")
    assert "signed with another key" in body["Message"]


# ---- read cost ------------------------------------------------------------------------------


class ReadMeter:
    """Read units of every DynamoDB call, from the sizes of the items it returned.

    moto reports a constant ConsumedCapacity, so units are computed the way DynamoDB bills
    them (strongly consistent; eventually consistent reads cost half): a Query by the total
    size of the items it read, in 4 KB units; BatchGetItem per item, each rounded up to 4 KB.
    (No FilterExpression is used, so returned = examined.) A window page queries the time
    index and batch-gets the events, so `index_units` and `event_units` tell them apart.
    """

    def __init__(self, dynamodb: Any) -> None:
        self.operations: list[str] = []
        self.index_units = 0
        self.event_units = 0
        dynamodb.meta.events.register("before-call.dynamodb", self._before)
        dynamodb.meta.events.register("after-call.dynamodb.*", self._after)

    def _before(self, model: Any, **kwargs: Any) -> None:
        self.operations.append(model.name)

    def _after(self, parsed: dict[str, Any], model: Any, **kwargs: Any) -> None:
        if model.name == "Query":
            size = sum(store.item_size(item) for item in parsed.get("Items", []))
            self.index_units += max(1, math.ceil(size / 4096))
        elif model.name == "BatchGetItem":
            for items in parsed.get("Responses", {}).values():
                self.event_units += sum(max(1, math.ceil(store.item_size(i) / 4096)) for i in items)

    def reset(self) -> None:
        self.operations.clear()
        self.index_units = 0
        self.event_units = 0


def _bulk(count: int, offset: int, day: datetime) -> list[dict[str, Any]]:
    # Same-sized events spread evenly over two days; ids of equal length.
    step = 2 * 86400 / count
    return [
        delivered(
            f"int-{(offset + n) % 500:05d}",
            f"bulk-{offset + n:06d}",
            at(day, n * step + offset % 7),
        )
        for n in range(count)
    ]


def test_a_window_page_costs_the_same_with_ten_times_the_events(
    own_client: Client, provisioned: Runtime
) -> None:
    client = own_client
    day = datetime(2026, 11, 1, tzinfo=UTC)
    meter = ReadMeter(provisioned.dynamodb)
    params = {"since": rfc3339(day), "until": rfc3339(day + timedelta(days=2)), "limit": 100}

    def page_costs() -> list[tuple[int, int]]:
        """(event units, index units) of the first page and of one reached with a cursor."""
        costs = []
        cursor = None
        for _ in range(2):
            meter.reset()
            query = dict(params, **({"cursor": cursor} if cursor else {}))
            status, body = get_json(client, "/replay", **query)
            assert status == 200 and len(body["events"]) == 100
            costs.append((meter.event_units, meter.index_units))
            assert set(meter.operations) <= {"Query", "BatchGetItem"}, meter.operations
            cursor = body["next_cursor"]
        return costs

    seed(provisioned, _bulk(1000, 0, day))
    with_1k = page_costs()
    seed(provisioned, _bulk(9000, 1000, day))
    with_10k = page_costs()

    # Exactly the page's 100 items of about 700 bytes: one unit each, however many are stored.
    assert [events for events, _ in with_1k + with_10k] == [100] * 4
    # The index: one query per shard of about 26 small items (2 units at most), plus a query
    # for a shard that held more than its share of the page. Which shard an event's entry
    # landed in varies, so the two stores' pages may differ by a unit or two; a plan that
    # grew with the store would read ten times as much (a day holds 5,000 entries here).
    shards = provisioned.settings.time_index_shards
    assert all(index <= 3 * shards for _, index in with_1k + with_10k), (with_1k, with_10k)
    assert "Scan" not in meter.operations


# ---- wiring ---------------------------------------------------------------------------------


def test_every_route_is_behind_iam_in_every_app_the_blueprint_joins() -> None:
    expected = {
        ("/interactions/{interaction_id}/events", "GET"),
        ("/replay", "GET"),
        ("/replay/jobs", "POST"),
        ("/replay/jobs/{job_id}", "GET"),
    }
    for _ in range(2):  # app.py's app and any number of test apps
        app = Chalice("wiring")
        app.register_blueprint(api)
        routes = {
            (path, method): entry
            for path, methods in app.routes.items()
            for method, entry in methods.items()
        }
        assert set(routes) == expected
        assert all(type(e.authorizer).__name__ == "IAMAuthorizer" for e in routes.values())
        assert "replay_worker" in app.handler_map


def test_each_app_serves_its_own_request_after_the_blueprint_joined_another(
    bare_client: Client,
) -> None:
    # bare_client's app is registered first; a second app joins later (as app.py's app and a
    # test's app would in one process). Requests through the first must still be its own.
    later = Chalice("later")
    later.register_blueprint(api)
    with Client(later, stage_name="test") as later_client:
        assert later_client.http.get("/replay?limit=0").status_code == 400
    response = bare_client.http.get(f"/replay?since={SINCE}&until={SINCE}")
    assert json.loads(response.body)["Message"] == "until: must be later than since"
    response = bare_client.http.post(
        "/replay/jobs", headers={"Content-Type": "application/json"}, body="[]"
    )
    assert json.loads(response.body)["Message"].startswith("body: must be a JSON object")


# docs/openapi.json against every route app.py serves: tests/integration/test_openapi.py.


# ---- the operator CLI, over real HTTP ------------------------------------------------------


@pytest.fixture
def api_url(stage: Runtime) -> Iterator[str]:
    """The blueprint served by Chalice's local dev server on 127.0.0.1 (as the local stack)."""
    from chalice.config import Config
    from chalice.local import create_local_server

    app = Chalice("cli")
    app.register_blueprint(api)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_local_server(app, Config.create(chalice_stage="test"), "127.0.0.1", port)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.server.shutdown()
        server.server.server_close()
        thread.join(timeout=5)


def _cli(*argv: str) -> tuple[int, str]:
    from rich.console import Console

    from scripts.operations import replay

    console = Console(record=True, width=250, file=io.StringIO())  # tables; JSON goes to stdout
    code = replay.main(list(argv), console=console)
    return code, console.export_text()


def test_cli_lists_timeline_and_window_over_plain_http(
    api_url: str, stage: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    day = datetime(2026, 10, 6, tzinfo=UTC)
    seed(stage, [delivered("cli/1", f"cli-{n}", at(day, 60 - n), sequence=n) for n in range(5)])

    code, output = _cli("--api-url", api_url, "timeline", "cli/1", "--limit", "2")
    assert code == 0
    assert "5 events" in output
    assert output.index("cli-0") < output.index("cli-4")  # in sequence order, all pages

    code, _ = _cli(
        "--api-url", api_url, "--json", "window",
        "--since", rfc3339(day), "--until", at(day, 3600), "--limit", "2",
    )  # fmt: skip
    assert code == 0
    listed = json.loads(capsys.readouterr().out)  # one JSON list, [] when empty
    assert [event["event_id"] for event in listed] == [f"cli-{n}" for n in range(4, -1, -1)]

    code, output = _cli("--api-url", api_url, "window", "--since", "yesterday", "--until", "now")
    assert code == 1
    assert "400 BadRequestError" in output and "since:" in output


def test_cli_starts_a_job_and_reports_it(
    api_url: str, stage: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    from chalicelib.replay import jobs as replay_jobs

    day = datetime(2026, 10, 7, tzinfo=UTC)
    seed(stage, [delivered("cli-job", f"j{n}", at(day, n)) for n in range(3)])
    code, _ = _cli(
        "--api-url", api_url, "--json", "start",
        "--since", rfc3339(day), "--until", at(day, 60), "--consumer", "crm-updater",
    )  # fmt: skip
    assert code == 0
    job_id = json.loads(capsys.readouterr().out)["job_id"]

    # The worker runs outside the request; run it here, then follow the finished job.
    assert replay_jobs.run_job(stage, job_id) is replay_jobs.RunOutcome.DONE
    code, output = _cli("--api-url", api_url, "status", job_id, "--follow", "--interval", "0.1")
    assert code == 0
    assert "done" in output and "100.0%" in output
    assert "matched 3" in output and "published 3" in output

    code, output = _cli("--api-url", api_url, "status", "0" * 32)
    assert code == 1 and "404 NotFoundError" in output


def test_cli_signs_for_deployed_stages_only(aws_endpoint: str) -> None:
    from scripts.operations import replay

    deployed = replay.client_for(
        replay.parser().parse_args(
            ["--api-url", "https://abc123.execute-api.eu-west-1.amazonaws.com/api", "status", "x"]
        )
    )
    request = deployed.prepare("GET", "/replay", {"since": "a", "limit": None}, None)
    authorization = request["headers"]["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=")
    assert "/eu-west-1/execute-api/aws4_request" in authorization
    assert request["url"].endswith("/api/replay?since=a")

    local = replay.client_for(
        replay.parser().parse_args(["--api-url", "http://127.0.0.1:8000", "status", "x"])
    )
    assert "Authorization" not in local.prepare("GET", "/replay", None, None)["headers"]
    forced = replay.client_for(
        replay.parser().parse_args(["--api-url", "http://localhost:8000", "--sign", "status", "x"])
    )
    assert "Authorization" in forced.prepare("POST", "/replay/jobs", None, {"a": 1})["headers"]

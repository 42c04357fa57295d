"""The traffic generators (CXone, Genesys, Amazon Connect, their mix): realistic, deterministic,
and honest about what they injected."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.config import DEFAULT_STAGES, DETAIL_TYPE_ROUTING, DETAIL_TYPE_STAGE, load_settings
from chalicelib.formats import parse_rfc3339
from chalicelib.ingest.ordering import HighWaterMark
from chalicelib.model import CanonicalEvent
from chalicelib.providers.validation import validate_event
from scripts.traffic.connect import INVALID_KINDS as CONNECT_INVALID_KINDS
from scripts.traffic.connect import without_timestamps
from scripts.traffic.genesys import INVALID_KINDS as GENESYS_INVALID_KINDS
from scripts.traffic.providers import make_traffic
from scripts.traffic.simulate import (
    INVALID_KINDS,
    SendResult,
    TrafficGenerator,
    TrafficItem,
    TrafficProfile,
    bus_by_source,
    generate_traffic,
    main,
    run_traffic,
    send_to_bus,
    send_to_queue,
    summarize,
)

START = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
NO_FAULTS = TrafficProfile(duplicate_ratio=0.0, reorder_ratio=0.0, invalid_ratio=0.0)
RFC3339_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ENVELOPE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
RFC3339_ANY = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")

# What may follow each stage in a CXone contact's life (routing events aside).
NEXT_STAGES = {
    "Queued": {"Offered"},
    "Offered": {"Connected", "Queued"},  # answered, or not answered and re-queued
    "Connected": {"Recorded", "Monitor", "Transfer", "WrapUp"},
    "Recorded": {"Monitor", "Transfer", "WrapUp"},
    "Monitor": {"Transfer", "WrapUp"},
    "Transfer": {"Offered", "Queued"},
    "WrapUp": {"Closed"},
    "Closed": set(),
}


def contract_errors(event: dict[str, Any]) -> list[str]:
    """the relay's CXone contract table, checked independently of the generator and the app."""
    errors = []
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return ["detail is not an object"]
    interaction_id = detail.get("interaction.id")
    if not isinstance(interaction_id, str) or not 1 <= len(interaction_id) <= 64:
        errors.append("interaction.id")
    if event.get("detail-type") == DETAIL_TYPE_STAGE:
        if detail.get("stage") not in DEFAULT_STAGES:
            errors.append("stage")
    elif event.get("detail-type") == DETAIL_TYPE_ROUTING:
        if not isinstance(detail.get("state"), str) or not detail["state"]:
            errors.append("state")
    else:
        errors.append("detail-type")
    sequence = detail.get("sequence")
    if "sequence" in detail and (
        isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0
    ):
        errors.append("sequence")
    if "timestamp" in detail and not RFC3339_ANY.match(str(detail["timestamp"])):
        errors.append("timestamp")
    if "metadata" in detail and not isinstance(detail["metadata"], dict):
        errors.append("metadata")
    participant = detail.get("participant.id")
    if participant is not None and (not isinstance(participant, str) or len(participant) > 64):
        errors.append("participant.id")
    return errors


def by_interaction(items: Sequence[TrafficItem]) -> dict[str, list[dict[str, Any]]]:
    """Each interaction's valid events, in emission order."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        if item.kind == "valid":
            grouped[item.event["detail"]["interaction.id"]].append(item.event)
    return grouped


def test_the_same_seed_gives_the_same_traffic_and_another_seed_does_not() -> None:
    first = generate_traffic(300, seed=11, start=START)
    again = generate_traffic(300, seed=11, start=START)
    other = generate_traffic(300, seed=12, start=START)

    assert first == again
    assert [item.event["id"] for item in first] != [item.event["id"] for item in other]


def test_without_reordering_each_interaction_counts_up_in_sequence_and_time() -> None:
    items = generate_traffic(2000, TrafficProfile(reorder_ratio=0.0), seed=1, start=START)

    for interaction_id, events in by_interaction(items).items():
        sequences = [event["detail"]["sequence"] for event in events]
        assert sequences == list(range(len(sequences))), interaction_id
        timestamps = [event["detail"]["timestamp"] for event in events]
        assert all(RFC3339_MS_Z.match(stamp) for stamp in timestamps)
        assert timestamps == sorted(timestamps) and len(set(timestamps)) == len(timestamps)
        for event in events:
            assert ENVELOPE_TIME.match(event["time"])
            assert event["time"] == event["detail"]["timestamp"][:19] + "Z"


def test_sequences_continue_across_chunks_of_a_long_running_generator() -> None:
    generator = TrafficGenerator(TrafficProfile(reorder_ratio=0.0), seed=5, start=START)
    items = generator.take(150) + generator.take(150)

    for events in by_interaction(items).values():
        sequences = [event["detail"]["sequence"] for event in events]
        assert sequences == list(range(len(sequences)))


def test_lifecycles_follow_the_cxone_contact_stages() -> None:
    items = generate_traffic(3000, seed=2, start=START)
    seen_stages: set[str] = set()
    requeued = transferred = closed = 0
    routing_states: set[str] = set()

    for interaction_id, events in by_interaction(items).items():
        events = sorted(events, key=lambda event: event["detail"]["sequence"])
        stages = [e["detail"]["stage"] for e in events if e["detail-type"] == DETAIL_TYPE_STAGE]
        routing_states.update(
            e["detail"]["state"] for e in events if e["detail-type"] == DETAIL_TYPE_ROUTING
        )
        seen_stages.update(stages)
        if events[0]["detail"]["sequence"] == 0:
            assert stages[0] == "Queued", interaction_id
        for current, following in itertools.pairwise(stages):
            assert following in NEXT_STAGES[current], (interaction_id, stages)
        pairs = itertools.pairwise(stages)
        requeued += any(a == "Offered" and b == "Queued" for a, b in pairs)
        transferred += "Transfer" in stages
        closed += stages[-1:] == ["Closed"]

    assert seen_stages == set(DEFAULT_STAGES)
    assert requeued > 0 and transferred > 0 and closed > 100
    assert {"Busy", "ACW", "Available"} <= routing_states


def test_many_interactions_are_in_flight_at_once() -> None:
    items = generate_traffic(200, seed=4, start=START)
    first_twenty = {item.interaction_id for item in items[:20]}

    assert len(first_twenty) >= 10


@pytest.mark.parametrize(
    ("duplicate_ratio", "invalid_ratio", "reorder_ratio"),
    [(0.05, 0.02, 0.1), (0.2, 0.1, 0.25), (0.0, 0.0, 0.0)],
)
def test_injection_ratios_are_roughly_honoured(
    duplicate_ratio: float, invalid_ratio: float, reorder_ratio: float
) -> None:
    profile = TrafficProfile(
        duplicate_ratio=duplicate_ratio, invalid_ratio=invalid_ratio, reorder_ratio=reorder_ratio
    )
    items = generate_traffic(2000, profile, seed=9, start=START)
    summary = summarize(items)

    assert summary.total == 2000 == summary.valid + summary.duplicates + summary.invalid
    assert summary.duplicates / 2000 == pytest.approx(duplicate_ratio, abs=0.02)
    assert summary.invalid / 2000 == pytest.approx(invalid_ratio, abs=0.015)
    assert summary.reordered / summary.valid == pytest.approx(reorder_ratio, abs=0.03)


def test_a_reordered_event_arrives_after_a_newer_event_of_its_interaction() -> None:
    items = generate_traffic(2000, seed=3, start=START)
    highest_sent: dict[str, int] = {}
    late = 0

    for item in items:
        if item.kind != "valid":
            continue
        interaction_id, sequence = item.interaction_id, item.event["detail"]["sequence"]
        is_late = sequence < highest_sent.get(interaction_id, -1)
        assert is_late == item.reordered, item.event
        late += is_late
        highest_sent[interaction_id] = max(sequence, highest_sent.get(interaction_id, -1))

    assert late == summarize(items).reordered > 100


def test_a_duplicate_is_the_same_event_emitted_again_later() -> None:
    items = generate_traffic(2000, seed=6, start=START)
    emitted_before: dict[str, dict[str, Any]] = {}
    duplicates = 0

    for item in items:
        if item.kind == "duplicate":
            duplicates += 1
            original = emitted_before[item.event["id"]]
            assert item.event == original
            # Re-sent through PutEvents a duplicate gets a new envelope id: the provider's
            # eventId is what still identifies it.
            assert item.event["detail"]["eventId"] == original["detail"]["eventId"]
        elif item.kind == "valid":
            assert item.event["id"] not in emitted_before
            emitted_before[item.event["id"]] = item.event

    assert duplicates > 50


def test_valid_events_meet_the_contract_and_the_relay_accepts_them() -> None:
    settings = load_settings({"AWS_REGION": "us-east-1"})
    items = generate_traffic(1000, seed=8, start=START)

    for item in items:
        if item.kind == "invalid":
            continue
        assert contract_errors(item.event) == [], item.event
        assert isinstance(validate_event(item.event, settings), CanonicalEvent), item.event


def test_invalid_events_break_the_contract_in_every_injected_way() -> None:
    settings = load_settings({"AWS_REGION": "us-east-1"})
    profile = TrafficProfile(invalid_ratio=0.5, duplicate_ratio=0.0)
    items = generate_traffic(600, profile, seed=10, start=START)
    invalid = [item for item in items if item.kind == "invalid"]

    assert {item.invalid_reason for item in invalid} == set(INVALID_KINDS)
    for item in invalid:
        assert contract_errors(item.event), (item.invalid_reason, item.event)
        assert not isinstance(validate_event(item.event, settings), CanonicalEvent), item.event
    reasons = {item.invalid_reason: item.event["detail"] for item in invalid}
    assert reasons["unknown_stage"]["stage"] == "Escalated"
    assert "interaction.id" not in reasons["missing_interaction_id"]
    assert reasons["string_sequence"]["sequence"] == str(reasons["string_sequence"]["sequence"])


def test_summary_counts_a_duplicate_as_the_event_when_the_original_was_not_sent() -> None:
    items = generate_traffic(500, seed=12, start=START)
    duplicate = next(item for item in items if item.kind == "duplicate")
    without_original = [
        item
        for item in items
        if not (item.kind == "valid" and item.event["id"] == duplicate.event["id"])
    ]

    full, partial = summarize(items), summarize(without_original)

    # The duplicate now stands in for the original: the relay will deliver it once.
    assert partial.valid == full.valid
    assert partial.duplicates == full.duplicates - 1


def test_profile_refuses_ratios_outside_zero_to_one() -> None:
    with pytest.raises(ValueError, match="duplicate_ratio"):
        TrafficProfile(duplicate_ratio=1.5)


# --------------------------------------------------------------------------- sending


def put_events_request(events: Sequence[dict[str, Any]], bus: str) -> dict[str, Any]:
    return {
        "Entries": [
            {
                "Source": event["source"],
                "DetailType": event["detail-type"],
                "Detail": json.dumps(event["detail"], separators=(",", ":")),
                "Resources": [],
                "EventBusName": bus,
                "Time": parse_rfc3339(event["time"]),
            }
            for event in events
        ]
    }


def test_send_to_bus_retries_only_the_failed_entries() -> None:
    # moto never reports a partly failed PutEvents, so the responses are stubbed.
    client = boto3.client("events", region_name="us-east-1")
    events = [item.event for item in generate_traffic(3, NO_FAULTS, seed=1)]
    pauses: list[float] = []
    with Stubber(client) as stub:
        stub.add_response(
            "put_events",
            {
                "FailedEntryCount": 1,
                "Entries": [
                    {"EventId": "a"},
                    {"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"},
                    {"EventId": "c"},
                ],
            },
            put_events_request(events, "bus"),
        )
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 0, "Entries": [{"EventId": "b"}]},
            put_events_request(events[1:2], "bus"),
        )
        result = send_to_bus(client, "bus", events, sleep=pauses.append)
        stub.assert_no_pending_responses()

    assert result == SendResult(sent=3, failed=[])
    assert len(pauses) == 1


def test_send_to_bus_reports_what_still_fails_after_every_attempt() -> None:
    # moto never refuses a PutEvents entry, so the responses are stubbed.
    client = boto3.client("events", region_name="us-east-1")
    events = [item.event for item in generate_traffic(2, NO_FAULTS, seed=1)]
    failing = {"ErrorCode": "InternalFailure", "ErrorMessage": "try later"}
    with Stubber(client) as stub:
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 1, "Entries": [failing, {"EventId": "b"}]},
            put_events_request(events, "bus"),
        )
        for _ in range(2):
            stub.add_response(
                "put_events",
                {"FailedEntryCount": 1, "Entries": [failing]},
                put_events_request(events[:1], "bus"),
            )
        result = send_to_bus(client, "bus", events, max_attempts=3, sleep=lambda _: None)

    assert result.sent == 1
    assert [(f.index, f.event["id"], f.error_code) for f in result.failed] == [
        (0, events[0]["id"], "InternalFailure")
    ]


def test_send_to_queue_never_counts_an_unconfirmed_entry_as_sent() -> None:
    # moto confirms every valid entry, so the response is stubbed: SQS answered neither way.
    client = boto3.client("sqs", region_name="us-east-1")
    events = [item.event for item in generate_traffic(2, NO_FAULTS, seed=1)]
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
    with Stubber(client) as stub:
        stub.add_response(
            "send_message_batch",
            {"Successful": [{"Id": "0", "MessageId": "m", "MD5OfMessageBody": "x"}], "Failed": []},
        )
        result = send_to_queue(client, url, events, max_attempts=1)

    assert result.sent == 1
    assert [f.index for f in result.failed] == [1]


# --------------------------------------------------------------------------- paced runs


class RecordingSender:
    def __init__(self, fail_every: int = 0) -> None:
        self.requests: list[list[dict[str, Any]]] = []
        self.fail_every = fail_every

    def __call__(self, events: Sequence[dict[str, Any]]) -> SendResult:
        from scripts.traffic.simulate import FailedSend

        self.requests.append(list(events))
        failed = [
            FailedSend(i, event, "Refused", "test")
            for i, event in enumerate(events)
            if self.fail_every and i % self.fail_every == 0
        ]
        return SendResult(sent=len(events) - len(failed), failed=failed)


def test_run_traffic_paces_sending_at_the_rate() -> None:
    sender = RecordingSender()
    generator = TrafficGenerator(seed=1, start=START)
    started = time.monotonic()

    run = run_traffic(sender, generator, rate=200.0, count=60)

    elapsed = time.monotonic() - started
    assert sum(len(request) for request in sender.requests) == 60
    assert max(len(request) for request in sender.requests) <= 10
    # The last request of 10 is scheduled at 50 / 200 s; sending all at once would take ~0 s.
    assert elapsed >= 0.24
    assert run.sent == 60 and run.summary.total == 60


def test_run_traffic_for_a_duration_sends_no_more_than_the_rate_allows() -> None:
    sender = RecordingSender()

    run = run_traffic(sender, TrafficGenerator(seed=1, start=START), rate=100.0, duration=0.3)

    assert 20 <= run.sent <= 30
    assert run.elapsed_seconds < 0.6


def test_run_traffic_summary_leaves_out_what_was_not_sent() -> None:
    sender = RecordingSender(fail_every=5)  # entries 0 and 5 of every request of 10 fail
    run = run_traffic(sender, TrafficGenerator(seed=1, start=START), rate=10_000.0, count=100)

    assert len(run.failed) == 20
    assert run.summary.total == 80


def test_run_traffic_stops_when_asked() -> None:
    stop = threading.Event()
    sender = RecordingSender()
    generator = TrafficGenerator(seed=1, start=START)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()

    run = run_traffic(sender, generator, rate=20.0, duration=30.0, stop=stop)

    assert time.monotonic() - started < 2.0
    assert 0 < run.sent < 30


def test_cli_dry_run_prints_the_events_as_json_lines(capsys: pytest.CaptureFixture) -> None:
    assert main(["--dry-run", "--count", "30", "--seed", "4", "--invalid-ratio", "0"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 30
    events = [json.loads(line) for line in lines]
    assert all(event["source"] == "com.nice.cxone.interactions" for event in events)
    assert all(contract_errors(event) == [] for event in events)


# --------------------------------------------------------------------------- other providers

CONNECT_LIFECYCLE = (
    "INITIATED",
    "CONNECTED_TO_SYSTEM",
    "QUEUED",
    "CONNECTED_TO_AGENT",
    "DISCONNECTED",
    "COMPLETED",
)
GENESYS_CONVERSATION = (
    "customer.start",
    "acd.start",
    "acd.end",
    "user.start",
    "transcription",
    "user.end",
    "acw",
    "customer.end",
)
RELAY_SETTINGS = load_settings({"AWS_REGION": "us-east-1"})


def provider_traffic(provider: str, count: int, seed: int, **profile: Any) -> list[TrafficItem]:
    return make_traffic(provider, TrafficProfile(**profile), seed, start=START).take(count)


def contacts(items: Sequence[TrafficItem]) -> dict[str, list[dict[str, Any]]]:
    """Each Connect contact's valid events' details, in emission order."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        if item.kind == "valid":
            grouped[item.event["detail"]["contactId"]].append(item.event["detail"])
    return grouped


def test_connect_contacts_go_through_their_lifecycle_and_transfers_start_new_contacts() -> None:
    items = provider_traffic("connect", 3000, 21, reorder_ratio=0.0, invalid_ratio=0.0)
    by_contact = contacts(items)
    transfers = data_updates = 0

    for contact_id, details in by_contact.items():
        types = [d["eventType"] for d in details if d["eventType"] != "CONTACT_DATA_UPDATED"]
        data_updates += len(details) - len(types)
        # The lifecycle in order, up to where the run stopped; a transferred-to contact starts
        # in the queue (it never meets the IVR: no CONNECTED_TO_SYSTEM).
        first = details[0]
        if first["initiationMethod"] == "TRANSFER":
            transfers += 1
            assert first["previousContactId"] in by_contact, contact_id
            assert first["initialContactId"] != contact_id
            expected = [t for t in CONNECT_LIFECYCLE if t != "CONNECTED_TO_SYSTEM"]
        else:
            assert "initialContactId" not in first
            expected = list(CONNECT_LIFECYCLE)
        assert types == expected[: len(types)], (contact_id, types)
        assert {d["channel"] for d in details} <= {"VOICE", "CHAT", "TASK"}

    assert transfers > 20 and data_updates > 20


def test_connect_events_sometimes_lack_timestamps_and_the_relay_takes_them() -> None:
    items = provider_traffic("connect", 2000, 22, invalid_ratio=0.0)
    own = {
        "INITIATED": ("initiationTimestamp",),
        "QUEUED": ("queueInfo", "enqueueTimestamp"),
        "DISCONNECTED": ("disconnectTimestamp",),
    }
    missing = bare = 0

    for item in items:
        detail = item.event["detail"]
        path = own.get(detail["eventType"])
        value: Any = detail
        for key in path or ():
            value = value.get(key) if isinstance(value, dict) else None
        missing += path is not None and value is None
        bare += detail["eventType"] == "DISCONNECTED" and without_timestamps(detail) == detail
        event = validate_event(item.event, RELAY_SETTINGS)
        assert isinstance(event, CanonicalEvent), item.event
        assert (event.interaction_id, event.dedup_key) == item.dedup_key
        assert event.interaction_id == detail.get("initialContactId", detail["contactId"])

    assert missing > 20 and bare > 5


def test_genesys_transcription_streams_share_one_correlation_id_per_conversation() -> None:
    items = provider_traffic(
        "genesys", 3000, 23, invalid_ratio=0.0, duplicate_ratio=0.0, reorder_ratio=0.0
    )
    streams: dict[str, list[dict[str, Any]]] = defaultdict(list)
    topics: dict[str, list[str]] = defaultdict(list)

    for item in items:
        detail = item.event["detail"]
        conversation = detail["eventBody"]["conversationId"]
        suffix = detail["topicName"].split(conversation + ".")[1]
        topics[conversation].append(suffix)
        if suffix == "transcription":
            streams[conversation].append(detail)

    long_streams = [s for s in streams.values() if len(s) >= 20]
    assert len(long_streams) >= 5
    for stream in long_streams:
        assert len({d["metadata"]["CorrelationId"] for d in stream}) == 1
        assert len({json.dumps(d["eventBody"], sort_keys=True) for d in stream}) == len(stream)
    without_transcription = [s for s in GENESYS_CONVERSATION if s != "transcription"]
    for conversation, suffixes in topics.items():
        # One conversation's topics in their order, its transcription stream (if any) between
        # user.start and user.end; the run may stop mid-conversation.
        collapsed = [s for n, s in enumerate(suffixes) if n == 0 or s != suffixes[n - 1]]
        expected = GENESYS_CONVERSATION if "transcription" in collapsed else without_transcription
        assert collapsed == list(expected[: len(collapsed)]), (conversation, collapsed)


def test_a_genesys_duplicate_is_a_re_send_of_the_same_notification() -> None:
    items = provider_traffic("genesys", 2000, 24, invalid_ratio=0.0)
    first_copies = {item.dedup_key: item.event for item in items if item.kind == "valid"}
    duplicates = [item for item in items if item.kind == "duplicate"]

    assert len(duplicates) > 50
    for item in duplicates:
        original = first_copies[item.dedup_key]
        assert item.event["detail"] == original["detail"]
        assert item.event["id"] != original["id"]  # a new EventBridge id, as Genesys re-sends


def test_connect_duplicates_repeat_the_envelope_and_only_where_an_id_can_repeat() -> None:
    for_the_bus = provider_traffic("connect", 1000, 25)
    for_the_queue = make_traffic(
        "connect", TrafficProfile(), 25, start=START, same_id_redeliveries=True
    ).take(1000)
    sent_before = {item.event["id"]: item.event for item in for_the_queue if item.kind == "valid"}

    # PutEvents gives every entry a new id: a copy would be a second event, so none is made.
    assert not any(item.kind == "duplicate" for item in for_the_bus)
    summary = summarize(for_the_bus)
    assert summary.total == 1000 == summary.valid + summary.invalid
    redelivered = [item for item in for_the_queue if item.kind == "duplicate"]
    assert len(redelivered) > 20
    assert all(item.event == sent_before[item.event["id"]] for item in redelivered)


@pytest.mark.parametrize("provider", ["cxone", "genesys", "connect", "mix"])
def test_late_marks_are_exactly_the_events_the_relay_will_flag_late(provider: str) -> None:
    """Replayed through the relay's own order rule and high-water mark, in emission order."""
    items = provider_traffic(provider, 2000, 26, invalid_ratio=0.0)
    marks: dict[str, HighWaterMark] = {}
    seen: set[tuple[str | None, str]] = set()
    late = 0

    for item in items:
        if item.kind != "valid" or item.dedup_key in seen:
            continue
        seen.add(item.dedup_key)
        event = validate_event(item.event, RELAY_SETTINGS)
        assert isinstance(event, CanonicalEvent)
        mark = marks.get(event.interaction_id, HighWaterMark())
        assert mark.is_late(event) == item.reordered, item.event
        late += item.reordered
        marks[event.interaction_id] = mark.advance(event)

    assert late == summarize(items).reordered > 50


@pytest.mark.parametrize(
    ("provider", "kinds"), [("genesys", GENESYS_INVALID_KINDS), ("connect", CONNECT_INVALID_KINDS)]
)
def test_invalid_events_of_each_provider_are_refused_in_every_injected_way(
    provider: str, kinds: tuple[str, ...]
) -> None:
    items = provider_traffic(provider, 600, 27, invalid_ratio=0.5, duplicate_ratio=0.0)
    invalid = [item for item in items if item.kind == "invalid"]

    assert {item.invalid_reason for item in invalid} == set(kinds)
    for item in items:
        accepted = isinstance(validate_event(item.event, RELAY_SETTINGS), CanonicalEvent)
        assert accepted == (item.kind != "invalid"), (item.invalid_reason, item.event)


def test_the_mix_interleaves_the_three_providers_and_still_adds_up() -> None:
    items = provider_traffic("mix", 3000, 28)
    again = provider_traffic("mix", 3000, 28)
    summary = summarize(items)
    sources = Counter(
        "genesys" if s.startswith("aws.partner/") else s
        for s in (item.event["source"] for item in items)
    )

    assert [item.event for item in items] == [item.event for item in again]
    assert summary.total == 3000 == summary.valid + summary.duplicates + summary.invalid
    assert set(sources) == {"com.nice.cxone.interactions", "genesys", "aws.connect"}
    assert sources["com.nice.cxone.interactions"] > sources["genesys"] > sources["aws.connect"]
    first_hundred = {item.event["source"][:12] for item in items[:100]}
    assert len(first_hundred) == 3  # interleaved, not one provider after another


def test_connect_events_go_to_the_default_bus_and_the_others_to_the_relay_bus() -> None:
    events = [item.event for item in provider_traffic("mix", 200, 29)]
    route = bus_by_source("relay-bus", "default")

    buses = {(event["source"] == "aws.connect", route(event)) for event in events}
    assert buses == {(True, "default"), (False, "relay-bus")}


def test_cli_dry_run_of_a_provider_prints_its_events(capsys: pytest.CaptureFixture) -> None:
    assert main(["--provider", "genesys", "--dry-run", "--count", "40", "--seed", "4"]) == 0

    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(events) == 40
    assert all(event["source"].startswith("aws.partner/genesys.com/cloud/") for event in events)


def test_cli_refuses_connect_traffic_through_post_events(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--provider", "connect", "--via", "https", "--count", "5"])

    assert "no Amazon Connect rule" in capsys.readouterr().err


def test_in_the_mix_every_providers_clock_keeps_pace_with_the_stream() -> None:
    """The local stack measures latency from occurred_at: no provider may fall behind."""
    gap = timedelta(milliseconds=50)  # 20 events a second
    items = make_traffic("mix", TrafficProfile(mean_gap_ms=50), 30, start=START).take(4000)
    newest: dict[str, datetime] = {}

    for item in items:
        event = validate_event(item.event, RELAY_SETTINGS)
        if isinstance(event, CanonicalEvent):
            moment = parse_rfc3339(event.occurred_at)
            newest[event.source[:12]] = max(moment, newest.get(event.source[:12], moment))

    stream_end = START + gap * len(items)
    assert len(newest) == 3
    for source, moment in newest.items():
        assert abs(moment - stream_end) < timedelta(seconds=40), (source, moment, stream_end)

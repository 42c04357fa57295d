"""Validation of CXone events and of bodies that are not events at all (pure, no AWS)."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from chalicelib.config import load_settings
from chalicelib.model import CanonicalEvent, InvalidEvent
from chalicelib.providers.validation import (
    MAX_NESTING_DEPTH,
    PARTITION_KEY_MAX_BYTES,
    SORT_KEY_MAX_BYTES,
    key_limit_errors,
    validate_event,
    validate_record,
)

SETTINGS = load_settings({"AWS_REGION": "us-east-1"})
RFC3339_MILLIS_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def stage_event(**detail_changes: Any) -> dict[str, Any]:
    """The CXone contract example event; `detail_changes` set (or, with value ..., remove) keys."""
    event: dict[str, Any] = {
        "version": "0",
        "id": "6f1c2d3e-0000-4000-8000-000000000001",
        "detail-type": "Interaction.Lifecycle.StageChanged",
        "source": "com.nice.cxone.interactions",
        "account": "123456789012",
        "time": "2026-11-29T09:00:01Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "interaction.id": "int-20261129-0001",
            "participant.id": "agent-17",
            "stage": "Connected",
            "sequence": 2,
            "timestamp": "2026-11-29T09:00:01.250Z",
            "metadata": {"skill": "billing"},
        },
    }
    for key, value in detail_changes.items():
        if value is ...:
            event["detail"].pop(key, None)
        else:
            event["detail"][key] = value
    return event


def routing_event(**detail_changes: Any) -> dict[str, Any]:
    event = stage_event(**{"stage": ..., "state": "Available", **detail_changes})
    event["detail-type"] = "Routing.StateChanged"
    return event


def invalid(result: CanonicalEvent | InvalidEvent) -> InvalidEvent:
    assert isinstance(result, InvalidEvent), f"expected InvalidEvent, got {result!r}"
    return result


# --- valid events ------------------------------------------------------------------------------


def test_stage_changed_event_maps_every_canonical_field() -> None:
    event = stage_event(eventId="cx-evt-991")

    result = validate_record(json.dumps(event), SETTINGS)

    assert result == CanonicalEvent(
        event_id="6f1c2d3e-0000-4000-8000-000000000001",
        dedup_key="cx-evt-991",
        interaction_id="int-20261129-0001",
        participant_id="agent-17",
        detail_type="Interaction.Lifecycle.StageChanged",
        stage="Connected",
        state=None,
        sequence=2,
        occurred_at="2026-11-29T09:00:01.250Z",
        source="com.nice.cxone.interactions",
        event=event,
    )
    assert isinstance(result, CanonicalEvent)
    assert result.event == event


def test_routing_event_without_optional_fields_falls_back_to_envelope_id_and_time() -> None:
    event = routing_event(
        **{"participant.id": ..., "sequence": ..., "timestamp": ..., "metadata": ...}
    )

    result = validate_record(json.dumps(event).encode("utf-8"), SETTINGS)

    assert isinstance(result, CanonicalEvent)
    assert result.detail_type == "Routing.StateChanged"
    assert (result.state, result.stage) == ("Available", None)
    assert result.dedup_key == event["id"]
    assert result.participant_id is None
    assert result.sequence is None
    assert result.occurred_at == "2026-11-29T09:00:01.000Z"


def test_unknown_detail_keys_are_accepted_and_passed_on_in_the_original_event() -> None:
    event = stage_event(queueName="billing-en", nested={"anything": [1, 2]}, interaction_id=5)

    result = validate_record(json.dumps(event), SETTINGS)

    assert isinstance(result, CanonicalEvent)
    assert result.interaction_id == "int-20261129-0001"
    assert result.event["detail"]["queueName"] == "billing-en"
    assert result.event == event


def test_validate_event_keeps_the_object_it_was_given() -> None:
    event = stage_event()

    result = validate_event(event, SETTINGS)

    assert isinstance(result, CanonicalEvent)
    assert result.event is event


@pytest.mark.parametrize(
    ("timestamp", "occurred_at"),
    [
        ("2026-11-29T10:00:01.25+01:00", "2026-11-29T09:00:01.250Z"),
        ("2026-11-29T04:30:01.123456789-04:30", "2026-11-29T09:00:01.123Z"),
        ("2026-11-29t09:00:01z", "2026-11-29T09:00:01.000Z"),
        ("2026-12-31T23:59:60Z", "2026-12-31T23:59:59.999Z"),  # leap second keeps its order
    ],
)
def test_rfc3339_timestamps_are_normalised_to_utc_millis_z(
    timestamp: str, occurred_at: str
) -> None:
    result = validate_event(stage_event(timestamp=timestamp), SETTINGS)

    assert isinstance(result, CanonicalEvent)
    assert result.occurred_at == occurred_at


def test_configured_states_restrict_routing_states() -> None:
    restricted = load_settings(
        {"AWS_REGION": "us-east-1", "RELAY_ALLOWED_STATES": "Available,Unavailable"}
    )

    accepted = validate_event(routing_event(state="Unavailable"), restricted)
    refused = invalid(validate_event(routing_event(state="Lunch"), restricted))

    assert isinstance(accepted, CanonicalEvent)
    assert refused.errors == {
        "detail.state": ["'Lunch' is not an allowed state; allowed: Available, Unavailable"]
    }


def test_configured_stages_replace_the_default_list() -> None:
    with_escalated = load_settings(
        {"AWS_REGION": "us-east-1", "RELAY_ALLOWED_STAGES": "Queued,Escalated"}
    )

    result = validate_event(stage_event(stage="Escalated"), with_escalated)

    assert isinstance(result, CanonicalEvent)
    assert result.stage == "Escalated"


# --- invalid events: one bad field each ------------------------------------------------------

LONG = "x" * 65


@pytest.mark.parametrize(
    ("event", "field", "message_part"),
    [
        pytest.param(stage_event(stage="Escalated"), "detail.stage",
                     "'Escalated' is not an allowed stage; allowed: Queued, Offered, Connected",
                     id="unknown-stage"),
        pytest.param(stage_event(stage=...), "detail.stage", "required", id="stage-missing"),
        pytest.param(stage_event(stage=3), "detail.stage", "expected a string, got an integer 3",
                     id="stage-not-string"),
        pytest.param(routing_event(state=...), "detail.state", "required", id="state-missing"),
        pytest.param(routing_event(state=""), "detail.state", "at least 1", id="state-empty"),
        pytest.param(stage_event(sequence="3"), "detail.sequence", "got a string '3'",
                     id="sequence-string"),
        pytest.param(stage_event(sequence=3.5), "detail.sequence", "got a number 3.5",
                     id="sequence-float"),
        pytest.param(stage_event(sequence=3.0), "detail.sequence", "got a number 3.0",
                     id="sequence-integral-float"),
        pytest.param(stage_event(sequence=True), "detail.sequence", "got a boolean true",
                     id="sequence-bool"),
        pytest.param(stage_event(sequence=-1), "detail.sequence", "got -1",
                     id="sequence-negative"),
        pytest.param(stage_event(sequence=2**63), "detail.sequence",
                     "at most 9223372036854775807", id="sequence-beyond-int64"),
        pytest.param(stage_event(**{"interaction.id": ...}), "detail.interaction.id",
                     "required", id="interaction-id-missing"),
        pytest.param(stage_event(**{"interaction.id": ..., "interaction": {"id": "int-1"}}),
                     "detail.interaction.id", "required", id="interaction-id-nested-not-literal"),
        pytest.param(stage_event(**{"interaction.id": ""}), "detail.interaction.id",
                     "must be 1-64 characters long, got 0", id="interaction-id-empty"),
        pytest.param(stage_event(**{"interaction.id": LONG}), "detail.interaction.id",
                     "got 65", id="interaction-id-too-long"),
        pytest.param(stage_event(**{"interaction.id": 42}), "detail.interaction.id",
                     "got an integer 42", id="interaction-id-number"),
        pytest.param(stage_event(**{"participant.id": LONG}), "detail.participant.id",
                     "at most 64", id="participant-id-too-long"),
        pytest.param(stage_event(eventId="e" * 129), "detail.eventId", "got 129",
                     id="event-id-too-long"),
        pytest.param(stage_event(eventId=""), "detail.eventId", "got 0", id="event-id-empty"),
        pytest.param(stage_event(metadata=["skill"]), "detail.metadata",
                     "expected a JSON object, got an array", id="metadata-array"),
        pytest.param(stage_event(metadata={"blob": "x" * 300_000}), "detail.metadata",
                     "the limit is 16,384", id="metadata-300KB"),
        pytest.param(stage_event(timestamp="2026-11-29 09:00:00"), "detail.timestamp",
                     "'2026-11-29 09:00:00' is not an RFC 3339 timestamp", id="timestamp-space"),
        pytest.param(stage_event(timestamp="2026-11-29T09:00:00"), "detail.timestamp",
                     "'2026-11-29T09:00:00' is not an RFC 3339 timestamp",
                     id="timestamp-no-offset"),
        pytest.param(stage_event(timestamp="2026-02-30T09:00:00Z"), "detail.timestamp",
                     "not a real date", id="timestamp-impossible-date"),
        pytest.param(stage_event(timestamp="2026-11-29T09:00:00+0100"), "detail.timestamp",
                     "not an RFC 3339 timestamp", id="timestamp-offset-without-colon"),
        pytest.param(stage_event(timestamp=1764406800000), "detail.timestamp",
                     "expected an RFC 3339 timestamp string, got an integer",
                     id="timestamp-epoch-millis"),
        pytest.param(stage_event(timestamp="\uff12\uff10\uff12\uff16-11-29T09:00:00Z"),
                     "detail.timestamp", "not an RFC 3339 timestamp",
                     id="timestamp-non-ascii-digits"),
    ],
)  # fmt: skip
def test_each_bad_detail_field_is_invalid_with_a_readable_error(
    event: dict[str, Any], field: str, message_part: str
) -> None:
    result = invalid(validate_record(json.dumps(event), SETTINGS))

    assert result.reason == "invalid"
    assert list(result.errors) == [field]
    assert any(message_part in message for message in result.errors[field]), result.errors


def without(event: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in event.items() if name != key}


def replaced(event: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**event, key: value}


@pytest.mark.parametrize(
    ("event", "field", "message_part"),
    [
        pytest.param(without(stage_event(), "id"), "id", "required", id="id-missing"),
        pytest.param(replaced(stage_event(), "id", 7), "id", "got an integer 7", id="id-number"),
        pytest.param(without(stage_event(), "detail"), "detail", "required",
                     id="detail-missing"),
        pytest.param(replaced(stage_event(), "detail", "x"), "detail",
                     "expected a JSON object, got a string 'x'", id="detail-string"),
        pytest.param(without(stage_event(), "time"), "time", "required", id="time-missing"),
        pytest.param(replaced(stage_event(), "time", "2026-11-29 09:00:00"), "time",
                     "not an RFC 3339 timestamp", id="time-space"),
        pytest.param(replaced(stage_event(), "detail-type", "Interaction.Escalated"),
                     "detail-type",
                     "'Interaction.Escalated' is not a CXone detail-type; allowed: "
                     "Interaction.Lifecycle.StageChanged, Routing.StateChanged",
                     id="unknown-detail-type"),
        pytest.param(without(stage_event(), "detail-type"), "detail-type", "required",
                     id="detail-type-missing"),
        pytest.param(replaced(stage_event(), "source", "com.example.other"), "source",
                     "'com.example.other' is not an accepted source; accepted: "
                     "'com.nice.cxone.interactions' or one starting with "
                     "'aws.partner/genesys.com/cloud/'", id="unknown-source"),
        pytest.param(without(stage_event(), "source"), "source", "required",
                     id="source-missing"),
        pytest.param(replaced(stage_event(), "source", ["com.nice.cxone.interactions"]),
                     "source", "expected a string, got an array", id="source-array"),
    ],
)  # fmt: skip
def test_each_bad_envelope_field_is_invalid_with_a_readable_error(
    event: dict[str, Any], field: str, message_part: str
) -> None:
    result = invalid(validate_record(json.dumps(event), SETTINGS))

    assert result.reason == "invalid"
    assert list(result.errors) == [field]
    assert any(message_part in message for message in result.errors[field]), result.errors


def test_every_error_of_an_event_is_reported_at_once() -> None:
    event = stage_event(stage="Escalated", sequence="3", **{"interaction.id": ...})
    event["time"] = "yesterday"

    result = invalid(validate_record(json.dumps(event), SETTINGS))

    assert set(result.errors) == {
        "time",
        "detail.stage",
        "detail.sequence",
        "detail.interaction.id",
    }


def test_the_metadata_limit_is_configurable() -> None:
    small = load_settings({"AWS_REGION": "us-east-1", "RELAY_METADATA_MAX_BYTES": "10"})
    metadata = {"skill": "billing"}  # {"skill":"billing"}: 19 bytes

    result = invalid(validate_event(stage_event(metadata=metadata), small))

    assert result.errors == {"detail.metadata": ["is 19 bytes serialized; the limit is 10"]}


# --- bodies that are not events ------------------------------------------------------------------


def nested_arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("body", "reason", "message_part"),
    [
        pytest.param("not json", "unparseable", "not valid JSON", id="not-json"),
        pytest.param("", "unparseable", "not valid JSON", id="empty"),
        pytest.param('{"id": "a",', "unparseable", "not valid JSON", id="truncated"),
        pytest.param(json.dumps(stage_event()).replace("2,", "NaN,"), "unparseable",
                     "NaN is not valid JSON", id="nan"),
        pytest.param('{"a": Infinity}', "unparseable", "Infinity is not valid JSON",
                     id="infinity"),
        pytest.param('{"a": 1e400}', "unparseable", "out of range", id="overflowing-float"),
        pytest.param('{"a": ' + "9" * 5000 + "}", "unparseable", "not valid JSON",
                     id="huge-integer"),
        pytest.param(nested_arrays(5000), "unparseable", "nested deeper than 64 levels",
                     id="5000-deep-array"),
        pytest.param('{"a":' * 5000 + "1" + "}" * 5000, "unparseable", "nested deeper",
                     id="5000-deep-object"),
        pytest.param(nested_arrays(MAX_NESTING_DEPTH + 1), "unparseable", "nested deeper",
                     id="just-too-deep"),
        pytest.param(b'{"id": "\xff\xfe"}', "unparseable", "not valid UTF-8",
                     id="invalid-utf8-bytes"),
        pytest.param('{"id": "\ud800"}', "unparseable", "lone surrogate",
                     id="str-with-lone-surrogate"),
        pytest.param('{"id": "\\udc00"}', "unparseable", "lone surrogate",
                     id="escaped-lone-surrogate"),
        pytest.param("[1, 2]", "invalid", "expected a JSON object (an event), got an array",
                     id="array"),
        pytest.param('"an event"', "invalid", "expected a JSON object (an event), got a string",
                     id="string"),
        pytest.param("null", "invalid", "expected a JSON object (an event), got null", id="null"),
        pytest.param("42", "invalid", "expected a JSON object (an event), got an integer",
                     id="number"),
    ],
)  # fmt: skip
def test_bodies_that_are_not_events(body: str | bytes, reason: str, message_part: str) -> None:
    result = invalid(validate_record(body, SETTINGS))

    assert result.reason == reason
    assert list(result.errors) == ["_body"]
    assert message_part in result.errors["_body"][0], result.errors


def test_escaped_surrogate_pairs_are_ordinary_characters() -> None:
    body = json.dumps(stage_event(note="\U0001f600"))  # ensure_ascii writes "\ud83d\ude00"

    assert "\\ud83d\\ude00" in body
    assert isinstance(validate_record(body, SETTINGS), CanonicalEvent)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    metadata: Any = "leaf"
    for _ in range(MAX_NESTING_DEPTH - 3):  # envelope, detail and metadata are 3 levels
        metadata = [metadata]
    event = stage_event(metadata={"deep": metadata})

    assert isinstance(validate_record(json.dumps(event), SETTINGS), CanonicalEvent)


@pytest.mark.parametrize(
    ("value", "message_part"),
    [
        pytest.param(stage_event(metadata={"ratio": float("nan")}), "not valid JSON", id="nan"),
        pytest.param({"source": {1, 2}}, "a set is not a JSON value", id="python-set"),
        pytest.param({1: "x"}, "object key 1 is not a string", id="non-string-key"),
        pytest.param(b"{}", "a bytes is not a JSON value", id="bytes"),
        pytest.param(stage_event(sequence=float("inf")), "not valid JSON", id="infinity"),
    ],
)
def test_validate_event_refuses_python_values_that_json_cannot_express(
    value: object, message_part: str
) -> None:
    result = invalid(validate_event(value, SETTINGS))

    assert result.reason == "unparseable"
    assert message_part in result.errors["_body"][0]


def test_validate_event_refuses_5000_deep_objects_without_recursion_error() -> None:
    deep: Any = {}
    for _ in range(5000):
        deep = {"a": deep}

    result = invalid(validate_event(stage_event(metadata=deep), SETTINGS))

    assert result.errors == {"_body": ["nested deeper than 64 levels"]}


def test_validate_event_reports_integers_too_long_to_print() -> None:
    # Python refuses to print an int of more than 4,300 digits; the message must not need to.
    result = invalid(validate_event(stage_event(sequence=10**5000), SETTINGS))

    assert result.errors == {
        "detail.sequence": [
            "must be at most 9223372036854775807 (a 64-bit integer), "
            "got an integer of about 5000 digits"
        ]
    }


def test_validate_event_refuses_non_objects() -> None:
    result = invalid(validate_event(["not", "an", "event"], SETTINGS))

    assert (result.reason, list(result.errors)) == ("invalid", ["_body"])


# --- never raises --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
DETAIL_KEYS = ["interaction.id", "participant.id", "stage", "state", "eventId", "sequence",
               "timestamp", "metadata"]  # fmt: skip
ENVELOPE_KEYS = ["id", "source", "detail-type", "time", "detail"]


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with some envelope and detail fields replaced by arbitrary JSON."""
    event = copy.deepcopy(draw(st.sampled_from([stage_event(), routing_event()])))
    for key in draw(st.lists(st.sampled_from(DETAIL_KEYS), max_size=4)):
        event["detail"][key] = draw(json_values)
    for key in draw(st.lists(st.sampled_from(ENVELOPE_KEYS), max_size=2)):
        event[key] = draw(json_values)
    return event


def assert_well_formed(result: object) -> None:
    assert isinstance(result, CanonicalEvent | InvalidEvent)
    if isinstance(result, CanonicalEvent):
        assert RFC3339_MILLIS_Z.fullmatch(result.occurred_at)
    else:
        assert result.reason in ("unparseable", "invalid")
        assert result.errors
        assert all(isinstance(messages, list) and messages for messages in result.errors.values())


FAST = hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@FAST
@given(body=st.text() | st.binary())
def test_validate_record_never_raises_on_arbitrary_text_or_bytes(body: str | bytes) -> None:
    assert_well_formed(validate_record(body, SETTINGS))


@FAST
@given(value=json_values)
def test_validate_record_never_raises_on_arbitrary_json(value: Any) -> None:
    assert_well_formed(validate_record(json.dumps(value), SETTINGS))


@FAST
@given(event=mutated_events())
def test_validate_record_never_raises_on_mutated_events(event: dict[str, Any]) -> None:
    result = validate_record(json.dumps(event), SETTINGS)

    assert_well_formed(result)
    assert validate_event(event, SETTINGS) == result


# --- DynamoDB key limits (every profile) -------------------------------------------------------


def canonical(**changes: Any) -> CanonicalEvent:
    event = validate_event(stage_event(), SETTINGS)
    assert isinstance(event, CanonicalEvent)
    return dataclasses.replace(event, **changes)


def test_keys_exactly_at_dynamodbs_limits_fit() -> None:
    # The sort key is "E#" + dedup key: 1,022 bytes of key make 1,024 bytes stored.
    event = canonical(interaction_id="é" * (PARTITION_KEY_MAX_BYTES // 2), dedup_key="k" * 1022)

    assert key_limit_errors(event, "detail.interaction.id", "detail.eventId") == {}


def test_keys_one_byte_over_dynamodbs_limits_are_named_with_the_limit() -> None:
    # 1,024 two-byte characters plus one byte; "E#" + 1,023 bytes.
    long_id = "é" * (PARTITION_KEY_MAX_BYTES // 2) + "x"
    event = canonical(interaction_id=long_id, dedup_key="k" * 1023)

    errors = key_limit_errors(event, "detail.interaction.id", "detail.eventId")

    assert errors == {
        "detail.interaction.id": [
            "makes a DynamoDB partition key of 2,049 bytes (UTF-8, as stored); "
            "the limit is 2,048 bytes"
        ],
        "detail.eventId": [
            "makes a DynamoDB sort key of 1,025 bytes (UTF-8, as stored); the limit is 1,024 bytes"
        ],
    }
    assert SORT_KEY_MAX_BYTES == 1024

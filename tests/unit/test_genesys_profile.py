"""Genesys Cloud profile: the sample events in tests/fixtures/genesys and malformed variants."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest

from chalicelib.config import load_settings
from chalicelib.formats import canonical_json, sha256_hex
from chalicelib.model import CanonicalEvent, InvalidEvent
from chalicelib.providers import genesys
from chalicelib.providers.validation import SORT_KEY_MAX_BYTES, validate_event, validate_record
from tests.support.genesys_fixtures import EXPECTED, conversation, user

SETTINGS = load_settings({"AWS_REGION": "us-east-1"})
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "genesys"
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture(name: str) -> dict[str, Any]:
    return json.loads(fixture_text(name))


def test_every_fixture_has_expectations() -> None:
    assert sorted(path.name for path in FIXTURE_FILES) == sorted(EXPECTED)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda path: path.name)
def test_every_fixture_validates_and_maps_to_the_contract_fields(path: Path) -> None:
    raw = path.read_text(encoding="utf-8")
    event = json.loads(raw)
    interaction_id, participant_id, state, stage, occurred_at = EXPECTED[path.name]

    result = validate_record(raw, SETTINGS)

    assert isinstance(result, CanonicalEvent), result
    assert result.event_id == event["id"]
    assert result.source == event["source"]
    assert result.detail_type == event["detail-type"]
    body_digest = sha256_hex(canonical_json(event["detail"]["eventBody"]))
    assert result.dedup_key == f"{event['detail']['topicName']}|{body_digest}"
    assert result.interaction_id == interaction_id
    assert result.participant_id == participant_id
    assert result.state == state
    assert result.stage == stage
    assert result.sequence is None
    assert result.occurred_at == occurred_at
    assert result.event == event


def test_acd_start_exact_values() -> None:
    result = validate_record(fixture_text("conversation.acd.start.json"), SETTINGS)

    assert isinstance(result, CanonicalEvent)
    assert result.stage == "Queued"
    assert result.interaction_id == "c0c0c0c0-0000-4000-8000-000000000001"
    assert result.occurred_at == "2025-12-12T15:03:45.452Z"
    # sha256 of the eventBody's canonical JSON, computed once by hand (sorted keys, no spaces).
    body = fixture("conversation.acd.start.json")["detail"]["eventBody"]
    assert result.dedup_key == (
        "v2.detail.events.conversation.c0c0c0c0-0000-4000-8000-000000000001.acd.start|"
        + sha256_hex(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    )


def test_user_presence_is_keyed_by_the_user_id_in_the_topic() -> None:
    result = validate_record(fixture_text("users.presence.json"), SETTINGS)

    assert isinstance(result, CanonicalEvent)
    assert result.interaction_id == "a5a5a5a5-0000-4000-8000-000000000001"
    assert result.state == "presence"


def test_the_two_chat_customer_end_samples_are_two_events() -> None:
    first = validate_record(fixture_text("conversation.customer.end.chat.json"), SETTINGS)
    second = validate_record(
        fixture_text("conversation.customer.end.chat-no-external-contact.json"), SETTINGS
    )

    assert isinstance(first, CanonicalEvent)
    assert isinstance(second, CanonicalEvent)
    # Same CorrelationId and topic, different eventBody: two notifications, both delivered.
    assert first.event["detail"]["metadata"] == second.event["detail"]["metadata"]
    assert first.dedup_key != second.dedup_key


def test_transcription_notifications_sharing_a_correlation_id_have_distinct_keys() -> None:
    """The live capture's shape: one CorrelationId for a whole transcription session."""
    original = fixture("conversations.transcription.json")
    keys = set()
    for offset in range(40):
        notification = copy.deepcopy(original)
        notification["id"] = f"eb0eb0eb-0000-4000-8000-{offset:012x}"
        notification["detail"]["eventBody"]["eventTime"] = 1773957888128 + offset * 700
        result = validate_event(notification, SETTINGS)
        assert isinstance(result, CanonicalEvent), result
        keys.add(result.dedup_key)

    assert len(keys) == 40


def test_a_resent_body_with_its_keys_in_another_order_keeps_its_dedup_key() -> None:
    original = fixture("conversation.acd.end.json")
    resent = copy.deepcopy(original)
    resent["detail"]["eventBody"] = dict(reversed(list(original["detail"]["eventBody"].items())))
    resent["id"] = "eb0eb0eb-0000-4000-8000-0000000000fe"

    first, second = validate_event(original, SETTINGS), validate_event(resent, SETTINGS)

    assert isinstance(first, CanonicalEvent) and isinstance(second, CanonicalEvent)
    assert first.dedup_key == second.dedup_key


def test_an_event_whose_state_comes_out_empty_is_invalid() -> None:
    event = fixture("users.presence.json")
    user_id = event["detail"]["topicName"].split(".")[2]
    event["detail-type"] = ".{id}"
    event["detail"]["topicName"] = f".{user_id}"

    result = invalid(validate_event(event, SETTINGS))

    assert list(result.errors) == ["detail-type"]
    assert "no state" in result.errors["detail-type"][0]


def test_a_dedup_key_over_dynamodbs_sort_key_limit_is_invalid_and_names_the_topic() -> None:
    event = fixture("users.presence.json")
    user_id = event["detail"]["topicName"].split(".")[2]
    # A topic of 470 characters, over 1,350 UTF-8 bytes: within TOPIC_MAX_CHARS, over 1,024
    # bytes as a key. It does not fit its pattern, so the conversationId locates it.
    event["detail"]["topicName"] = f"v2.users.{user_id}.presence." + "€" * 450
    event["detail"]["eventBody"]["conversationId"] = user_id

    result = invalid(validate_event(event, SETTINGS))

    assert result.reason == "invalid"
    assert list(result.errors) == ["detail.topicName"]
    message = result.errors["detail.topicName"][0]
    assert "sort key" in message and f"{SORT_KEY_MAX_BYTES:,} bytes" in message


def test_a_notification_resent_under_a_new_eventbridge_id_keeps_its_dedup_key() -> None:
    original = fixture("conversation.acd.end.json")
    resent = copy.deepcopy(original)
    resent["id"] = "eb0eb0eb-0000-4000-8000-0000000000ff"

    first, second = validate_event(original, SETTINGS), validate_event(resent, SETTINGS)

    assert isinstance(first, CanonicalEvent)
    assert isinstance(second, CanonicalEvent)
    assert first.event_id != second.event_id
    assert first.dedup_key == second.dedup_key


# --- malformed Genesys events --------------------------------------------------------------------


def acd_start(**detail_changes: Any) -> dict[str, Any]:
    event = fixture("conversation.acd.start.json")
    for key, value in detail_changes.items():
        if value is ...:
            event["detail"].pop(key, None)
        else:
            event["detail"][key] = value
    return event


def acd_start_with_body(**body_changes: Any) -> dict[str, Any]:
    event = acd_start()
    for key, value in body_changes.items():
        if value is ...:
            event["detail"]["eventBody"].pop(key, None)
        else:
            event["detail"]["eventBody"][key] = value
    return event


def invalid(result: CanonicalEvent | InvalidEvent) -> InvalidEvent:
    assert isinstance(result, InvalidEvent), f"expected InvalidEvent, got {result!r}"
    return result


@pytest.mark.parametrize(
    ("event", "field", "message_part"),
    [
        pytest.param(acd_start(metadata="c0770c07"), "detail.metadata",
                     "expected a JSON object, got a string", id="metadata-string"),
        pytest.param(acd_start(eventBody="{}"), "detail.eventBody",
                     "expected a JSON object, got a string '{}'", id="event-body-string"),
        pytest.param(acd_start(eventBody=[]), "detail.eventBody",
                     "expected a JSON object, got an array", id="event-body-array"),
        pytest.param(acd_start(eventBody=...), "detail.eventBody", "required",
                     id="event-body-missing"),
        pytest.param(acd_start(topicName=...), "detail.topicName", "required",
                     id="topic-name-missing"),
        pytest.param(acd_start(timestamp="2025-12-12 15:03:45"), "detail.timestamp",
                     "not an RFC 3339 timestamp", id="bad-detail-timestamp"),
        pytest.param(acd_start_with_body(eventTime="yesterday"), "detail.eventBody.eventTime",
                     "'yesterday' is not an RFC 3339 timestamp", id="event-time-word"),
        pytest.param(acd_start_with_body(eventTime=1765551825452.5),
                     "detail.eventBody.eventTime",
                     "expected epoch milliseconds (an integer) or an RFC 3339 string, "
                     "got a number 1765551825452.5", id="event-time-float"),
        pytest.param(acd_start_with_body(eventTime=True), "detail.eventBody.eventTime",
                     "got a boolean true", id="event-time-bool"),
        pytest.param(acd_start_with_body(eventTime=-5), "detail.eventBody.eventTime",
                     "-5 is out of range", id="event-time-negative"),
        pytest.param(acd_start_with_body(eventTime=10**20), "detail.eventBody.eventTime",
                     "out of range", id="event-time-far-future"),
        pytest.param(acd_start_with_body(eventTime="2025-12-12T15:03:45"),
                     "detail.eventBody.eventTime", "not an RFC 3339 timestamp",
                     id="event-time-without-offset"),
        pytest.param(acd_start_with_body(conversationId=7), "detail.eventBody.conversationId",
                     "got an integer 7", id="conversation-id-number"),
        pytest.param(acd_start_with_body(conversationId="c" * 129),
                     "detail.eventBody.conversationId", "got 129", id="conversation-id-long"),
    ],
)  # fmt: skip
def test_malformed_genesys_events_are_invalid_with_reasons(
    event: dict[str, Any], field: str, message_part: str
) -> None:
    result = invalid(validate_record(json.dumps(event), SETTINGS))

    assert result.reason == "invalid"
    assert list(result.errors) == [field]
    assert any(message_part in message for message in result.errors[field]), result.errors


def test_envelope_errors_and_detail_errors_are_reported_together() -> None:
    event = acd_start(metadata="c0770c07")
    event["time"] = "2025-12-12T15:03:45"
    del event["detail-type"]

    result = invalid(validate_event(event, SETTINGS))

    assert set(result.errors) == {"time", "detail-type", "detail.metadata"}


def test_metadata_is_optional_because_no_mapped_field_uses_it() -> None:
    result = validate_event(acd_start(metadata=...), SETTINGS)

    assert isinstance(result, CanonicalEvent), result


def test_an_event_without_any_interaction_id_is_invalid() -> None:
    event = fixture("users.presence.json")
    event["detail-type"] = "v2.system.presence"
    event["detail"]["topicName"] = "v2.system.presence"

    result = invalid(validate_event(event, SETTINGS))

    assert list(result.errors) == ["detail.topicName"]
    assert "no interaction id" in result.errors["detail.topicName"][0]


def test_a_topic_id_longer_than_128_characters_is_invalid() -> None:
    event = fixture("users.presence.json")
    event["detail"]["topicName"] = f"v2.users.{'u' * 129}.presence"

    result = invalid(validate_event(event, SETTINGS))

    assert "at most 128" in result.errors["detail.topicName"][0]


def test_unknown_topics_are_accepted_with_the_conversation_id() -> None:
    event = acd_start()
    event["detail-type"] = "v2.detail.events.conversation.{id}.wrapup.applied"
    event["detail"]["topicName"] = f"v2.detail.events.conversation.{conversation(1)}.wrapup.applied"

    result = validate_event(event, SETTINGS)

    assert isinstance(result, CanonicalEvent)
    assert (result.interaction_id, result.state, result.stage) == (
        conversation(1),
        "wrapup.applied",
        None,
    )


def test_a_topic_that_does_not_fit_its_pattern_still_maps_through_the_conversation_id() -> None:
    event = acd_start()
    event["detail-type"] = "v2.detail.events.conversation.acd.start"  # pattern lost its {id}

    result = validate_event(event, SETTINGS)

    assert isinstance(result, CanonicalEvent)
    assert (result.interaction_id, result.state, result.stage) == (
        conversation(1),
        "acd.start",
        "Queued",
    )


def test_occurred_at_falls_back_to_detail_timestamp_then_envelope_time() -> None:
    without_event_time = acd_start_with_body(eventTime=...)
    without_any_time = acd_start_with_body(eventTime=...)
    del without_any_time["detail"]["timestamp"]

    from_timestamp = validate_event(without_event_time, SETTINGS)
    from_envelope = validate_event(without_any_time, SETTINGS)

    assert isinstance(from_timestamp, CanonicalEvent)
    assert isinstance(from_envelope, CanonicalEvent)
    assert from_timestamp.occurred_at == "2025-12-12T15:03:45.764Z"
    assert from_envelope.occurred_at == "2025-12-12T15:03:45.000Z"


def test_event_time_strings_with_an_offset_are_normalised_to_utc() -> None:
    event = acd_start_with_body(eventTime="2025-12-12T16:03:45.452123+01:00")

    result = validate_event(event, SETTINGS)

    assert isinstance(result, CanonicalEvent)
    assert result.occurred_at == "2025-12-12T15:03:45.452Z"


def test_participant_falls_back_to_user_id_then_null() -> None:
    with_user = acd_start_with_body(participantId=..., userId=user(9))
    with_neither = acd_start_with_body(participantId=None)

    first, second = validate_event(with_user, SETTINGS), validate_event(with_neither, SETTINGS)

    assert isinstance(first, CanonicalEvent)
    assert isinstance(second, CanonicalEvent)
    assert first.participant_id == user(9)
    assert second.participant_id is None


def test_genesys_sources_are_refused_when_genesys_is_disabled() -> None:
    disabled = load_settings({"AWS_REGION": "us-east-1", "RELAY_GENESYS_ENABLED": "false"})

    result = invalid(validate_record(fixture_text("conversation.acd.start.json"), disabled))

    assert list(result.errors) == ["source"]
    assert (
        "is not an accepted source; accepted: 'com.nice.cxone.interactions'"
        in (result.errors["source"][0])
    )


def test_a_source_merely_containing_the_genesys_prefix_is_refused() -> None:
    event = acd_start()
    event["source"] = "evil/" + event["source"]

    result = invalid(validate_event(event, SETTINGS))

    assert list(result.errors) == ["source"]


# --- topic matching ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("detail_type", "topic_name", "ids"),
    [
        ("v2.users.{id}.presence", "v2.users.u-1.presence", ["u-1"]),
        ("v2.audits.entitytype.{id}.entityid.{id}", "v2.audits.entitytype.Q.entityid.e-1",
         ["Q", "e-1"]),
        ("v2.users.{id}.presence", "v2.users.u-1.activity", None),
        ("v2.users.{id}.presence", "v2.users..presence", None),
        ("v2.users.{id}.presence", "v2.users.u.1.presence", None),
    ],
)  # fmt: skip
def test_topic_ids_are_captured_segment_by_segment(
    detail_type: str, topic_name: str, ids: list[str] | None
) -> None:
    assert genesys.topic_ids(detail_type, topic_name) == ids


def test_topic_matching_stays_linear_for_hostile_patterns() -> None:
    # A regex built from "{id}{id}…" would backtrack exponentially on a near-miss topic.
    event = acd_start()
    event["detail-type"] = "{id}" * 60 + ".x"
    event["detail"]["topicName"] = "a" * 500 + ".y"

    started = time.perf_counter()
    result = validate_event(event, SETTINGS)

    assert time.perf_counter() - started < 0.5
    assert isinstance(result, CanonicalEvent)  # the conversationId still identifies it

"""Provider conformance: every fixture under tests/fixtures, through validation to the delivered
message a consumer receives, checked field by field against the provider's contract table.

The expected values are the contract tables applied by hand to each fixture (tests/fixtures/
README.md says which fixtures are captures and which are built from documentation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.config import load_settings
from chalicelib.formats import canonical_json, sha256_hex
from chalicelib.ingest.ordering import sort_interaction
from chalicelib.model import CanonicalEvent, delivered_message, message_attributes
from chalicelib.providers.validation import validate_event, validate_record
from tests.support.genesys_fixtures import EXPECTED as GENESYS_EXPECTED
from tests.support.helpers import DELIVERED_FIELDS

SETTINGS = load_settings({"AWS_REGION": "us-east-1"})
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RECEIVED_AT = "2026-11-29T12:00:00.000Z"

INSTANCE = "arn:aws:connect:us-east-1:123456789012:instance/1a1a1a1a-0000-4000-8000-000000000001"
AGENT_1 = f"{INSTANCE}/agent/a9e9a9e9-0000-4000-8000-000000000001"
AGENT_2 = f"{INSTANCE}/agent/a9e9a9e9-0000-4000-8000-000000000002"
VOICE = "c0a7c0a7-0000-4000-8000-000000000001"
CHAT = "c0a7c0a7-0000-4000-8000-000000000003"

# "<provider>/<file>" -> (interaction_id, participant_id, state, stage, sequence, occurred_at)
Expected = tuple[str, str | None, str, str | None, int | None, str]
EXPECTED: dict[str, Expected] = {
    "cxone/stage-changed.json": (
        "int-20261129-0001",
        "agent-17",
        "",
        "Connected",
        2,
        "2026-11-29T09:00:01.250Z",
    ),
    "cxone/routing-state-changed.json": (
        "int-20261129-0001",
        "agent-17",
        "Busy",
        None,
        3,
        "2026-11-29T09:00:02.000Z",  # no detail.timestamp: the envelope time
    ),
    "connect/voice.initiated.json": (
        VOICE,
        None,
        "INITIATED",
        None,
        None,
        "2026-11-29T09:00:00.000Z",
    ),
    "connect/voice.connected-to-system.json": (
        VOICE,
        None,
        "CONNECTED_TO_SYSTEM",
        None,
        None,
        "2026-11-29T09:00:01.000Z",
    ),
    "connect/voice.contact-data-updated.json": (
        VOICE,
        None,
        "CONTACT_DATA_UPDATED",
        None,
        None,
        "2026-11-29T09:00:05.000Z",  # no timestamp of its own: the envelope time
    ),
    "connect/voice.queued.json": (
        VOICE,
        None,
        "QUEUED",
        "Queued",
        None,
        "2026-11-29T09:00:08.000Z",
    ),
    "connect/voice.connected-to-agent.json": (
        VOICE,
        AGENT_1,
        "CONNECTED_TO_AGENT",
        "Connected",
        None,
        "2026-11-29T09:00:21.000Z",
    ),
    "connect/voice.disconnected.json": (
        VOICE,
        AGENT_1,
        "DISCONNECTED",
        None,
        None,
        "2026-11-29T09:06:40.000Z",
    ),
    "connect/voice.completed.json": (
        VOICE,
        AGENT_1,
        "COMPLETED",
        "Closed",
        None,
        "2026-11-29T09:08:10.000Z",  # agentInfo.afterContactWorkEndTimestamp
    ),
    "connect/voice.transfer.initiated.json": (
        VOICE,  # the initial contact: a transfer chain is one interaction
        None,
        "INITIATED",
        None,
        None,
        "2026-11-29T09:04:00.000Z",
    ),
    "connect/voice.transfer.connected-to-agent.json": (
        VOICE,
        AGENT_2,
        "CONNECTED_TO_AGENT",
        "Connected",
        None,
        "2026-11-29T09:04:30.000Z",
    ),
    "connect/voice.disconnected.no-timestamps.json": (
        VOICE,
        None,
        "DISCONNECTED",
        None,
        None,
        "2026-11-29T09:09:59.000Z",
    ),
    "connect/chat.initiated.json": (
        CHAT,
        None,
        "INITIATED",
        None,
        None,
        "2026-11-29T10:14:59.512Z",
    ),
    **{
        f"genesys/{name}": (interaction, participant, state, stage, None, occurred_at)
        for name, (interaction, participant, state, stage, occurred_at) in GENESYS_EXPECTED.items()
    },
}
# The CXone StageChanged contract has no state; the delivered message carries null.
NO_STATE = {"cxone/stage-changed.json"}
FIXTURE_FILES = sorted(FIXTURES.glob("*/*.json"))


def fixture_name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def expected_dedup_key(provider: str, event: dict[str, Any]) -> str:
    """Each profile's dedup key, from the profile contracts."""
    detail = event["detail"]
    if provider == "genesys":
        return f"{detail['topicName']}|{sha256_hex(canonical_json(detail['eventBody']))}"
    if provider == "cxone":
        return detail.get("eventId") or event["id"]
    return event["id"]


def test_every_fixture_has_expectations() -> None:
    assert sorted(fixture_name(path) for path in FIXTURE_FILES) == sorted(EXPECTED)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=fixture_name)
def test_fixture_becomes_the_contracts_delivered_message(path: Path) -> None:
    name = fixture_name(path)
    raw = path.read_text(encoding="utf-8")
    original = json.loads(raw)
    interaction_id, participant_id, state, stage, sequence, occurred_at = EXPECTED[name]

    event = validate_record(raw, SETTINGS)
    assert isinstance(event, CanonicalEvent), event
    message = delivered_message(event, received_at=RECEIVED_AT, late=False)

    assert set(message) == DELIVERED_FIELDS
    assert message["event_id"] == original["id"]
    assert message["interaction_id"] == interaction_id
    assert message["participant_id"] == participant_id
    assert message["detail_type"] == original["detail-type"]
    assert message["stage"] == stage
    assert message["state"] == (None if name in NO_STATE else state)
    assert message["sequence"] == sequence
    assert message["occurred_at"] == occurred_at
    assert message["received_at"] == RECEIVED_AT
    assert (message["late"], message["replay"], message["replay_job_id"]) == (False, False, None)
    assert message["source"] == original["source"]
    assert message["event"] == original
    assert event.dedup_key == expected_dedup_key(path.parent.name, original)
    # SNS refuses an empty attribute value: every attribute the message gets has one.
    attributes = message_attributes(message)
    assert all(a["StringValue"] for a in attributes.values()), attributes
    # The message travels as JSON: it survives a round trip unchanged.
    assert json.loads(json.dumps(message)) == message


def connect_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "connect" / name).read_text(encoding="utf-8"))


def test_connect_events_of_one_time_are_ordered_by_the_lifecycle_rank() -> None:
    """Events of one chain sharing one second (their timestamps missing): rank, then id."""
    names = [
        "voice.completed.json",
        "voice.disconnected.json",
        "voice.connected-to-agent.json",
        "voice.queued.json",
        "voice.connected-to-system.json",
        "voice.initiated.json",
    ]
    events = []
    for position, name in enumerate(names):
        event = connect_fixture(name)
        # Ids ascend from COMPLETED to INITIATED: by event id alone the order would be reversed.
        event["id"] = f"eb0eb0eb-0000-4000-8000-{position:012x}"
        event["time"] = "2026-11-29T09:30:00Z"
        for key in ("initiationTimestamp", "connectedToSystemTimestamp", "disconnectTimestamp"):
            event["detail"].pop(key, None)
        event["detail"].pop("queueInfo", None)
        event["detail"].pop("agentInfo", None)
        canonical = validate_event(event, SETTINGS)
        assert isinstance(canonical, CanonicalEvent), canonical
        events.append(canonical)

    ordered = [event.state for event in sort_interaction(events)]

    assert ordered == [
        "INITIATED",
        "CONNECTED_TO_SYSTEM",
        "QUEUED",
        "CONNECTED_TO_AGENT",
        "DISCONNECTED",
        "COMPLETED",
    ]


def test_a_connect_event_without_contact_id_or_event_type_is_invalid() -> None:
    event = connect_fixture("voice.queued.json")
    del event["detail"]["contactId"]
    del event["detail"]["eventType"]

    result = validate_event(event, SETTINGS)

    assert not isinstance(result, CanonicalEvent)
    assert result.reason == "invalid"
    assert result.errors == {
        "detail.contactId": ["is required but missing"],
        "detail.eventType": ["is required but missing"],
    }


@pytest.mark.parametrize(
    ("change", "field", "message_part"),
    [
        ({"queueInfo": {"enqueueTimestamp": "29/11/2026 09:00"}},
         "detail.queueInfo.enqueueTimestamp", "not an RFC 3339 timestamp"),
        ({"agentInfo": "agent-1"}, "detail.agentInfo", "expected a JSON object, got a string"),
        ({"contactId": 7}, "detail.contactId", "expected a string, got an integer 7"),
        ({"eventType": ""}, "detail.eventType", "got 0"),
        ({"tags": ["a"]}, "detail.tags", "expected a JSON object, got an array"),
    ],
)  # fmt: skip
def test_malformed_connect_fields_are_invalid_with_reasons(
    change: dict[str, Any], field: str, message_part: str
) -> None:
    event = connect_fixture("voice.queued.json")
    event["detail"].update(change)

    result = validate_event(event, SETTINGS)

    assert not isinstance(result, CanonicalEvent)
    assert list(result.errors) == [field]
    assert message_part in result.errors[field][0], result.errors


def test_another_amazon_connect_detail_type_is_not_a_contact_event() -> None:
    event = connect_fixture("voice.queued.json")
    event["detail-type"] = "Amazon Connect Agent Event"

    result = validate_event(event, SETTINGS)

    assert not isinstance(result, CanonicalEvent)
    assert "not an Amazon Connect contact event" in result.errors["detail-type"][0]


def test_unknown_connect_detail_keys_are_kept() -> None:
    event = connect_fixture("voice.queued.json")
    event["detail"]["segmentAttributes"] = {"connect:Subtype": {"ValueString": "connect:Voice"}}

    result = validate_event(event, SETTINGS)

    assert isinstance(result, CanonicalEvent), result
    assert result.event["detail"]["segmentAttributes"] == event["detail"]["segmentAttributes"]


def test_connect_sources_are_refused_when_connect_is_disabled() -> None:
    disabled = load_settings({"AWS_REGION": "us-east-1", "RELAY_CONNECT_ENABLED": "false"})

    result = validate_event(connect_fixture("voice.queued.json"), disabled)

    assert not isinstance(result, CanonicalEvent)
    assert "not an accepted source" in result.errors["source"][0]

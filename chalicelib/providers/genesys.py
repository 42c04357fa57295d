"""Genesys Cloud profile: the Genesys Cloud inbound event contract (docs/providers.md).

Genesys sets `detail-type` to the topic pattern (`v2.detail.events.conversation.{id}.acd.start`)
and `detail.topicName` to the concrete topic. Every topic is accepted. The pattern and the topic
are compared segment by segment (split on "."): a `{id}` segment captures the topic's segment at
the same position. That is linear in the topic's length, unlike a regex built from an untrusted
pattern, and fits every Genesys topic (ids are UUIDs, entity types are single words).

- interaction_id: `eventBody.conversationId`, else the id captured by the LAST `{id}` (the user id
  of `v2.users.{id}.presence`, the entity id of `v2.audits.entitytype.{id}.entityid.{id}`).
- state: the topic after the last `{id}` (`acd.start`, `customer.end`, `presence`,
  `transcription`). Chosen for audits, where nothing follows the last id: the id captured by the
  `{id}` before it, i.e. the entity type (`OAuthClient`, `UserPresence`); with no earlier `{id}`,
  the pattern segment just before the last `{id}` (`users` for `v2.users.{id}`).
- When the topic does not fit its pattern (a detail-type/topicName mismatch) the event is still
  accepted if `eventBody.conversationId` is present: state is then what follows that id in the
  topic, else the topic's last segment. With no conversationId either, it is invalid. A state
  that comes out empty is invalid too: SNS refuses an empty attribute value.
- dedup key: `topicName` + "|" + SHA-256 of the canonical JSON of `eventBody`. Not
  `metadata.CorrelationId`: Genesys gives every notification of a transcription session the same
  one. A re-send repeats its `eventBody` exactly, under any EventBridge id; distinct
  notifications differ in theirs (eventTime, utterance, …).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import EXCLUDE, ValidationError, fields

from chalicelib.config import GENESYS_SOURCE_PREFIX, Settings
from chalicelib.formats import canonical_json, parse_rfc3339, rfc3339, sha256_hex, shown
from chalicelib.model import CanonicalEvent, InvalidEvent
from chalicelib.providers.common import (
    Anything,
    EventBridgeEnvelopeSchema,
    JsonObject,
    ProfileSchema,
    ReadableMessages,
    StrictObject,
    Text,
    Timestamp,
    datetime_from_epoch_millis,
    described,
    load_envelope_and_detail,
)

ID_PLACEHOLDER = "{id}"
# Genesys ids are UUIDs (36 chars); leave room for other id shapes.
GENESYS_ID_MAX_CHARS = 128
# The topic leads the dedup key; DynamoDB's key byte limits are checked on the key itself
# (validation.key_limit_errors), this bound only refuses absurd topics early.
TOPIC_MAX_CHARS = 512

STAGE_BY_STATE: dict[str, str] = {
    "acd.start": "Queued",
    "acd.end": "Offered",
    "user.start": "Connected",
    "acw": "WrapUp",
    "customer.end": "Closed",
}


class EventTime(ReadableMessages, fields.Field[datetime]):
    """`eventBody.eventTime`: epoch milliseconds (analytics topics) or RFC 3339 (others)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        try:
            if isinstance(value, int) and not isinstance(value, bool):
                return datetime_from_epoch_millis(value)
            if isinstance(value, str):
                return parse_rfc3339(value)
        except ValueError as error:
            raise ValidationError(str(error)) from None
        raise ValidationError(
            "expected epoch milliseconds (an integer) or an RFC 3339 string, got "
            f"{described(value)}"
        )


class GenesysEventBodySchema(ProfileSchema):
    """Only the fields the mapping reads; the body's other keys are the topic's own business."""

    class Meta:
        unknown = EXCLUDE

    conversation_id = Text(
        data_key="conversationId", min_length=1, max_length=GENESYS_ID_MAX_CHARS, allow_none=True
    )
    # Empty ids are treated as absent rather than rejected: they are not what the event is about.
    participant_id = Text(
        data_key="participantId", max_length=GENESYS_ID_MAX_CHARS, allow_none=True
    )
    user_id = Text(data_key="userId", max_length=GENESYS_ID_MAX_CHARS, allow_none=True)
    event_time = EventTime(data_key="eventTime", allow_none=True)


class GenesysDetailSchema(ProfileSchema):
    class Meta:
        unknown = EXCLUDE

    topic_name = Text(required=True, data_key="topicName", min_length=1, max_length=TOPIC_MAX_CHARS)
    version = Anything()
    event_body = StrictObject(GenesysEventBodySchema, required=True, data_key="eventBody")
    # `metadata.CorrelationId` is passed on but not required: no field of the mapping uses it.
    metadata = JsonObject(allow_none=True)
    timestamp = Timestamp(allow_none=True)


_ENVELOPE_SCHEMA = EventBridgeEnvelopeSchema()
_DETAIL_SCHEMA = GenesysDetailSchema()


def topic_ids(detail_type: str, topic_name: str) -> list[str] | None:
    """The ids the topic holds where its pattern has `{id}`; None if it does not fit the pattern."""
    pattern_segments = detail_type.split(".")
    topic_segments = topic_name.split(".")
    if len(pattern_segments) != len(topic_segments):
        return None
    captured: list[str] = []
    for expected, actual in zip(pattern_segments, topic_segments, strict=True):
        if expected == ID_PLACEHOLDER:
            if not actual:
                return None
            captured.append(actual)
        elif expected != actual:
            return None
    return captured


def state_from_pattern(detail_type: str, captured: list[str]) -> str:
    """The topic after its last `{id}`, or for audits (nothing after it) the entity type."""
    pattern_segments = detail_type.split(".")
    last_id_at = len(pattern_segments) - 1 - pattern_segments[::-1].index(ID_PLACEHOLDER)
    after = ".".join(pattern_segments[last_id_at + 1 :])
    if after:
        return after
    if len(captured) >= 2:
        return captured[-2]
    return pattern_segments[last_id_at - 1] if last_id_at > 0 else detail_type


def state_around_id(topic_name: str, interaction_id: str) -> str:
    """Fallback for a topic that does not fit its pattern: what follows the id, else the end."""
    segments = topic_name.split(".")
    if interaction_id in segments:
        after = segments[segments.index(interaction_id) + 1 :]
        if after:
            return ".".join(after)
    return segments[-1] or topic_name


def locate_interaction(
    detail_type: str, topic_name: str, conversation_id: str | None
) -> tuple[str, str] | None:
    """(interaction_id, state) of a topic, or None when no interaction id can be found."""
    captured = topic_ids(detail_type, topic_name)
    if captured:
        state = state_from_pattern(detail_type, captured)
        return (conversation_id or captured[-1], state)
    if conversation_id:
        return (conversation_id, state_around_id(topic_name, conversation_id))
    return None


def dedup_key(topic_name: str, event_body: dict[str, Any]) -> str:
    """The content key: the topic and the SHA-256 of the body's canonical JSON."""
    return f"{topic_name}|{sha256_hex(canonical_json(event_body))}"


def key_fields(event: dict[str, Any]) -> tuple[str, str]:
    from_body = bool(event["detail"]["eventBody"].get("conversationId"))
    interaction_field = "detail.eventBody.conversationId" if from_body else "detail.topicName"
    return (interaction_field, "detail.topicName")


def matches_source(source: str, settings: Settings) -> bool:
    return settings.genesys_enabled and source.startswith(GENESYS_SOURCE_PREFIX)


def describe_sources(settings: Settings) -> str | None:
    if not settings.genesys_enabled:
        return None
    return f"one starting with {GENESYS_SOURCE_PREFIX!r}"


def to_canonical(event: dict[str, Any], settings: Settings) -> CanonicalEvent | InvalidEvent:
    """Validate a Genesys Cloud EventBridge event and map it onto the canonical fields."""
    loaded = load_envelope_and_detail(event, _ENVELOPE_SCHEMA, _DETAIL_SCHEMA)
    if not isinstance(loaded, tuple):
        return InvalidEvent(reason="invalid", errors=loaded)
    envelope, detail = loaded

    body: dict[str, Any] = detail["event_body"]
    topic_name: str = detail["topic_name"]
    located = locate_interaction(envelope["detail_type"], topic_name, body.get("conversation_id"))
    if located is None:
        return InvalidEvent(
            reason="invalid",
            errors={
                "detail.topicName": [
                    "no interaction id: eventBody.conversationId is absent and "
                    f"topicName {shown(topic_name)} has no id where detail-type "
                    f"{shown(envelope['detail_type'])} has {ID_PLACEHOLDER}"
                ]
            },
        )
    interaction_id, state = located
    if not state:
        return InvalidEvent(
            reason="invalid",
            errors={
                "detail-type": [
                    f"no state: detail-type {shown(envelope['detail_type'])} and topicName "
                    f"{shown(topic_name)} leave it empty, and SNS refuses an empty attribute"
                ]
            },
        )
    if len(interaction_id) > GENESYS_ID_MAX_CHARS:
        return InvalidEvent(
            reason="invalid",
            errors={
                "detail.topicName": [
                    f"the id in the topic is {len(interaction_id)} characters long; "
                    f"at most {GENESYS_ID_MAX_CHARS} allowed: {shown(interaction_id)}"
                ]
            },
        )
    occurred: datetime = body.get("event_time") or detail.get("timestamp") or envelope["time"]
    return CanonicalEvent(
        event_id=envelope["id"],
        dedup_key=dedup_key(topic_name, event["detail"]["eventBody"]),
        interaction_id=interaction_id,
        participant_id=body.get("participant_id") or body.get("user_id") or None,
        detail_type=envelope["detail_type"],
        stage=STAGE_BY_STATE.get(state),
        state=state,
        sequence=None,
        occurred_at=rfc3339(occurred),
        source=envelope["source"],
        event=event,
    )

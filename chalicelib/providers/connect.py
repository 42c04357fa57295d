"""Amazon Connect profile: the inbound-event contract for Amazon Connect.

Amazon Connect publishes contact events natively (source `aws.connect`, detail-type `Amazon
Connect Contact Event`) on the account's default bus. AWS documents them as unordered and best
effort, with no event id of the provider's and no sequence, and real ones often carry only some
fields (a DISCONNECTED may lack every timestamp): only `contactId` and `eventType` are required.

- interaction_id: `initialContactId`, else `contactId` (a transfer chain is one interaction).
- participant_id: `agentInfo.agentArn`; state: `eventType`; stage: QUEUED → Queued,
  CONNECTED_TO_AGENT → Connected, COMPLETED → Closed.
- occurred_at: the timestamp that belongs to the event type, else the envelope `time`.
- order: that time, then the lifecycle rank (`CanonicalEvent.order_rank`), then the event id;
  event types outside the lifecycle (CONTACT_DATA_UPDATED, PAUSED, …) rank first at a tie.
- dedup key: the EventBridge `id` (EventBridge's own re-deliveries repeat it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import INCLUDE, ValidationError, validates

from chalicelib.config import CONNECT_DETAIL_TYPE, CONNECT_SOURCE, Settings
from chalicelib.formats import rfc3339, shown
from chalicelib.model import CanonicalEvent, InvalidEvent
from chalicelib.providers.common import (
    EventBridgeEnvelopeSchema,
    JsonObject,
    ProfileSchema,
    StrictObject,
    Text,
    Timestamp,
    load_envelope_and_detail,
)

# Contact ids are UUIDs and ARNs stay under 2 KB; generous bounds refuse only garbage (the
# DynamoDB key limits are checked on the keys themselves, validation.key_limit_errors).
CONTACT_ID_MAX_CHARS = 256
ARN_MAX_CHARS = 2048
EVENT_TYPE_MAX_CHARS = 64

# The lifecycle of a contact, in order: the tie-breaker between events of the same time.
LIFECYCLE = (
    "INITIATED",
    "CONNECTED_TO_SYSTEM",
    "QUEUED",
    "CONNECTED_TO_AGENT",
    "DISCONNECTED",
    "COMPLETED",
)
LIFECYCLE_RANK: dict[str, int] = {event_type: rank for rank, event_type in enumerate(LIFECYCLE, 1)}
UNRANKED = 0

STAGE_BY_EVENT_TYPE: dict[str, str] = {
    "QUEUED": "Queued",
    "CONNECTED_TO_AGENT": "Connected",
    "COMPLETED": "Closed",
}

# The detail field (a path of keys) holding the time of each event type.
TIMESTAMP_OF_EVENT_TYPE: dict[str, tuple[str, ...]] = {
    "INITIATED": ("initiation_timestamp",),
    "CONNECTED_TO_SYSTEM": ("connected_to_system_timestamp",),
    "QUEUED": ("queue_info", "enqueue_timestamp"),
    "CONNECTED_TO_AGENT": ("agent_info", "connected_to_agent_timestamp"),
    "DISCONNECTED": ("disconnect_timestamp",),
    "COMPLETED": ("agent_info", "after_contact_work_end_timestamp"),
}


class ConnectEnvelopeSchema(EventBridgeEnvelopeSchema):
    @validates("detail_type")
    def _contact_event(self, value: str, data_key: str) -> None:
        if value != CONNECT_DETAIL_TYPE:
            raise ValidationError(
                f"{shown(value)} is not an Amazon Connect contact event; "
                f"expected {shown(CONNECT_DETAIL_TYPE)}"
            )


class QueueInfoSchema(ProfileSchema):
    class Meta:
        unknown = INCLUDE

    queue_arn = Text(data_key="queueArn", max_length=ARN_MAX_CHARS, allow_none=True)
    queue_type = Text(data_key="queueType", allow_none=True)
    enqueue_timestamp = Timestamp(data_key="enqueueTimestamp", allow_none=True)


class AgentInfoSchema(ProfileSchema):
    class Meta:
        unknown = INCLUDE

    agent_arn = Text(data_key="agentArn", max_length=ARN_MAX_CHARS, allow_none=True)
    connected_to_agent_timestamp = Timestamp(data_key="connectedToAgentTimestamp", allow_none=True)
    after_contact_work_start_timestamp = Timestamp(
        data_key="afterContactWorkStartTimestamp", allow_none=True
    )
    after_contact_work_end_timestamp = Timestamp(
        data_key="afterContactWorkEndTimestamp", allow_none=True
    )


def _contact_id(**kwargs: Any) -> Text:
    return Text(min_length=1, max_length=CONTACT_ID_MAX_CHARS, **kwargs)


class ConnectDetailSchema(ProfileSchema):
    """The documented detail fields; unknown keys are kept (the event travels on whole)."""

    class Meta:
        unknown = INCLUDE

    contact_id = _contact_id(required=True, data_key="contactId")
    initial_contact_id = _contact_id(data_key="initialContactId", allow_none=True)
    previous_contact_id = _contact_id(data_key="previousContactId", allow_none=True)
    related_contact_id = _contact_id(data_key="relatedContactId", allow_none=True)
    instance_arn = Text(data_key="instanceArn", max_length=ARN_MAX_CHARS, allow_none=True)
    channel = Text(data_key="channel", allow_none=True)
    initiation_method = Text(data_key="initiationMethod", allow_none=True)
    event_type = Text(
        required=True, data_key="eventType", min_length=1, max_length=EVENT_TYPE_MAX_CHARS
    )
    initiation_timestamp = Timestamp(data_key="initiationTimestamp", allow_none=True)
    connected_to_system_timestamp = Timestamp(
        data_key="connectedToSystemTimestamp", allow_none=True
    )
    disconnect_timestamp = Timestamp(data_key="disconnectTimestamp", allow_none=True)
    queue_info = StrictObject(QueueInfoSchema, data_key="queueInfo", allow_none=True)
    agent_info = StrictObject(AgentInfoSchema, data_key="agentInfo", allow_none=True)
    tags = JsonObject(allow_none=True)


_ENVELOPE_SCHEMA = ConnectEnvelopeSchema()
_DETAIL_SCHEMA = ConnectDetailSchema()


def event_time(detail: dict[str, Any]) -> datetime | None:
    """The timestamp that belongs to the event's type, if the event carries it."""
    value: Any = detail
    for key in TIMESTAMP_OF_EVENT_TYPE.get(detail["event_type"], ()):
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, datetime) else None


def matches_source(source: str, settings: Settings) -> bool:
    return settings.connect_enabled and source == CONNECT_SOURCE


def describe_sources(settings: Settings) -> str | None:
    return shown(CONNECT_SOURCE) if settings.connect_enabled else None


def key_fields(event: dict[str, Any]) -> tuple[str, str]:
    chained = bool(event["detail"].get("initialContactId"))
    return ("detail.initialContactId" if chained else "detail.contactId", "id")


def to_canonical(event: dict[str, Any], settings: Settings) -> CanonicalEvent | InvalidEvent:
    """Validate an Amazon Connect contact event and map it; every error found is reported."""
    loaded = load_envelope_and_detail(event, _ENVELOPE_SCHEMA, _DETAIL_SCHEMA)
    if not isinstance(loaded, tuple):
        return InvalidEvent(reason="invalid", errors=loaded)
    envelope, detail = loaded

    event_type: str = detail["event_type"]
    agent = detail.get("agent_info") or {}
    occurred = event_time(detail) or envelope["time"]
    return CanonicalEvent(
        event_id=envelope["id"],
        dedup_key=envelope["id"],
        interaction_id=detail.get("initial_contact_id") or detail["contact_id"],
        participant_id=agent.get("agent_arn") or None,
        detail_type=envelope["detail_type"],
        stage=STAGE_BY_EVENT_TYPE.get(event_type),
        state=event_type,
        sequence=None,
        occurred_at=rfc3339(occurred),
        source=envelope["source"],
        event=event,
        order_rank=LIFECYCLE_RANK.get(event_type, UNRANKED),
    )

"""CXone profile: the CXone inbound event contract (docs/providers.md).

One detail schema per detail-type. `interaction.id` and `participant.id` are literal keys that
contain a dot, hence `data_key`. Unknown detail keys are not rejected; they are not loaded
either, because the original event travels on whole in `CanonicalEvent.event`.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from marshmallow import EXCLUDE, ValidationError, validates

from chalicelib.config import CXONE_DETAIL_TYPES, DETAIL_TYPE_ROUTING, DETAIL_TYPE_STAGE, Settings
from chalicelib.formats import rfc3339, shown
from chalicelib.model import CanonicalEvent, InvalidEvent
from chalicelib.providers.common import (
    JsonObject,
    ProfileSchema,
    Text,
    Timestamp,
    WholeNumber,
    load_envelope_and_detail,
    serialized_size,
)

INTERACTION_ID_MAX_CHARS = 64
PARTICIPANT_ID_MAX_CHARS = 64
EVENT_ID_MAX_CHARS = 128


class CxoneEnvelopeSchema(ProfileSchema):
    """The EventBridge envelope; region, resources, account, version are tolerated, unchecked."""

    class Meta:
        unknown = EXCLUDE

    id = Text(required=True, min_length=1, max_length=128)
    source = Text(required=True, min_length=1)
    detail_type = Text(required=True, data_key="detail-type")
    time = Timestamp(required=True)
    detail = JsonObject(required=True)

    @validates("detail_type")
    def _known_detail_type(self, value: str, data_key: str) -> None:
        if value not in CXONE_DETAIL_TYPES:
            raise ValidationError(
                f"{shown(value)} is not a CXone detail-type; "
                f"allowed: {', '.join(CXONE_DETAIL_TYPES)}"
            )


class CxoneDetailSchema(ProfileSchema):
    """What both detail-types share. Optional fields accept null as "absent"."""

    class Meta:
        unknown = EXCLUDE

    interaction_id = Text(
        required=True,
        data_key="interaction.id",
        min_length=1,
        max_length=INTERACTION_ID_MAX_CHARS,
    )
    participant_id = Text(
        data_key="participant.id", max_length=PARTICIPANT_ID_MAX_CHARS, allow_none=True
    )
    event_id = Text(
        data_key="eventId", min_length=1, max_length=EVENT_ID_MAX_CHARS, allow_none=True
    )
    sequence = WholeNumber(allow_none=True)
    timestamp = Timestamp(allow_none=True)
    metadata = JsonObject(allow_none=True)

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings

    @validates("metadata")
    def _metadata_fits(self, value: dict[str, Any] | None, data_key: str) -> None:
        if value is None:
            return
        size = serialized_size(value)
        if size > self.settings.metadata_max_bytes:
            raise ValidationError(
                f"is {size:,} bytes serialized; the limit is {self.settings.metadata_max_bytes:,}"
            )


class StageChangedDetailSchema(CxoneDetailSchema):
    """Interaction.Lifecycle.StageChanged: `stage` required, one of the allowed stages."""

    stage = Text(required=True)

    @validates("stage")
    def _allowed_stage(self, value: str, data_key: str) -> None:
        allowed = self.settings.allowed_stages
        if value not in allowed:
            raise ValidationError(
                f"{shown(value)} is not an allowed stage; allowed: {', '.join(allowed)}"
            )


class RoutingStateChangedDetailSchema(CxoneDetailSchema):
    """Routing.StateChanged: `state` required, non-empty, in the allowed states if configured."""

    state = Text(required=True, min_length=1)

    @validates("state")
    def _allowed_state(self, value: str, data_key: str) -> None:
        allowed = self.settings.allowed_states
        if allowed and value not in allowed:
            raise ValidationError(
                f"{shown(value)} is not an allowed state; allowed: {', '.join(allowed)}"
            )


_DETAIL_SCHEMAS: dict[str, type[CxoneDetailSchema]] = {
    DETAIL_TYPE_STAGE: StageChangedDetailSchema,
    DETAIL_TYPE_ROUTING: RoutingStateChangedDetailSchema,
}
_ENVELOPE_SCHEMA = CxoneEnvelopeSchema()


@lru_cache(maxsize=16)
def _detail_schema(detail_type: str, settings: Settings) -> CxoneDetailSchema:
    # Building a schema costs far more than loading one event; settings change only per process.
    return _DETAIL_SCHEMAS[detail_type](settings)


def matches_source(source: str, settings: Settings) -> bool:
    return source == settings.event_source


def describe_sources(settings: Settings) -> str | None:
    return shown(settings.event_source)


def key_fields(event: dict[str, Any]) -> tuple[str, str]:
    has_event_id = bool(event["detail"].get("eventId"))
    return ("detail.interaction.id", "detail.eventId" if has_event_id else "id")


def to_canonical(event: dict[str, Any], settings: Settings) -> CanonicalEvent | InvalidEvent:
    """Validate a CXone EventBridge event and map it; every error found is reported at once."""
    detail_type = event.get("detail-type")
    # An unknown detail-type: the envelope schema says what is wrong with it.
    known = isinstance(detail_type, str) and detail_type in _DETAIL_SCHEMAS
    detail_schema = _detail_schema(detail_type, settings) if known else None
    loaded = load_envelope_and_detail(event, _ENVELOPE_SCHEMA, detail_schema)
    if not isinstance(loaded, tuple):
        return InvalidEvent(reason="invalid", errors=loaded)
    envelope, detail = loaded

    occurred: datetime = detail.get("timestamp") or envelope["time"]
    return CanonicalEvent(
        event_id=envelope["id"],
        dedup_key=detail.get("event_id") or envelope["id"],
        interaction_id=detail["interaction_id"],
        participant_id=detail.get("participant_id"),
        detail_type=envelope["detail_type"],
        stage=detail.get("stage"),
        state=detail.get("state"),
        sequence=detail.get("sequence"),
        occurred_at=rfc3339(occurred),
        source=envelope["source"],
        event=event,
    )

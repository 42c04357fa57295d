"""Typed records shared by every stage of the pipeline, and the shapes of the contracts:
the delivered message, the quarantine message, the listing responses and the Lambda SQS
response (the model is Powertools' `batch/types.py`: a TypedDict per wire shape).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from chalicelib.errors import PoisonReason
from chalicelib.formats import canonical_json, sha256_hex

# SNS refuses messages over 256 KB (message body plus attributes).
SNS_MAX_MESSAGE_BYTES = 256 * 1024
QUARANTINE_RAW_LIMIT = 64 * 1024


@dataclass(frozen=True)
class CanonicalEvent:
    """A validated event, whatever its provider, in the shape every later stage works on."""

    event_id: str  # the EventBridge envelope `id`
    dedup_key: str  # the profile's dedup key: provider id, content key or `event_id`
    interaction_id: str
    participant_id: str | None
    detail_type: str
    stage: str | None
    state: str | None
    sequence: int | None
    occurred_at: str  # RFC 3339, UTC, milliseconds, `Z`
    source: str
    event: dict[str, Any] = field(compare=False, repr=False)  # the original, as received
    # Tie-breaker before the event id among events of the same time, for a profile whose
    # provider has a lifecycle order but no sequence (Amazon Connect); None: no such order.
    order_rank: int | None = None

    @property
    def payload_sha256(self) -> str:
        """Fingerprint of what the provider said, to tell a re-send from a conflict."""
        return sha256_hex(canonical_json(self.event.get("detail")))


@dataclass(frozen=True)
class InvalidEvent:
    """Why a record cannot be delivered; it goes to quarantine with these reasons."""

    reason: PoisonReason
    errors: dict[str, list[str]]


# What the relay decided for a record it acknowledges (the batch outcome, the audit trail);
# every other record is a batch item failure.
Decision = Literal["delivered", "duplicate", "quarantined"]


class DeliveredMessage(TypedDict):
    """What every consumer topic receives (the delivered-message contract); a raw-delivery
    SQS subscriber's body."""

    event_id: str  # the EventBridge id of the first copy claimed: stable across retries
    interaction_id: str
    participant_id: str | None
    detail_type: str
    stage: str | None
    state: str | None
    sequence: int | None
    occurred_at: str  # RFC 3339, UTC, milliseconds, `Z`
    received_at: str
    late: bool
    replay: bool
    replay_job_id: str | None
    source: str
    event: dict[str, Any]  # the original EventBridge event, as received


class QuarantineMessage(TypedDict):
    """What the quarantine topic receives for a record that can never be delivered."""

    reason: PoisonReason
    errors: dict[str, list[str]]  # field path -> messages
    raw: str  # the original body, cut to its first QUARANTINE_RAW_LIMIT bytes
    raw_bytes: int
    raw_sha256: str
    message_id: str
    received_at: str


class EventPage(TypedDict):
    """A listing response (GET /interactions/{id}/events, GET /replay): stored delivered
    messages, and the cursor of the next page (None on the last)."""

    events: list[DeliveredMessage]
    next_cursor: str | None


class BatchItemFailure(TypedDict):
    itemIdentifier: str  # the SQS message id


class SqsBatchResponse(TypedDict):
    """The ingest Lambda's return value: the records SQS must deliver again (the event
    source mapping's ReportBatchItemFailures)."""

    batchItemFailures: list[BatchItemFailure]


def delivered_message(
    event: CanonicalEvent,
    *,
    received_at: str,
    late: bool,
    replay_job_id: str | None = None,
) -> DeliveredMessage:
    """The message every consumer receives (the delivered-message contract, README)."""
    return {
        "event_id": event.event_id,
        "interaction_id": event.interaction_id,
        "participant_id": event.participant_id,
        "detail_type": event.detail_type,
        "stage": event.stage,
        "state": event.state,
        "sequence": event.sequence,
        "occurred_at": event.occurred_at,
        "received_at": received_at,
        "late": late,
        "replay": replay_job_id is not None,
        "replay_job_id": replay_job_id,
        "source": event.source,
        "event": event.event,
    }


def message_attributes(message: Mapping[str, object]) -> dict[str, dict[str, str]]:
    """SNS attributes for subscription filters; all String, omitted when null."""
    attributes: dict[str, dict[str, str]] = {}
    for name in ("detail_type", "interaction_id", "stage", "state"):
        value = message.get(name)
        if value is not None:
            attributes[name] = {"DataType": "String", "StringValue": str(value)}
    for name in ("late", "replay"):
        value = "true" if message.get(name) else "false"
        attributes[name] = {"DataType": "String", "StringValue": value}
    return attributes


def sns_message_size(body: str, attributes: dict[str, dict[str, str]]) -> int:
    """Bytes SNS counts against its 256 KB limit: body plus attribute names, types, values."""
    size = len(body.encode("utf-8"))
    for name, attribute in attributes.items():
        size += len(name.encode()) + len(attribute["DataType"].encode())
        size += len(attribute["StringValue"].encode("utf-8"))
    return size


@dataclass(frozen=True)
class SqsRecord:
    message_id: str
    body: str
    receipt_handle: str
    receive_count: int
    source_arn: str

    @classmethod
    def from_lambda(cls, raw: dict[str, Any]) -> SqsRecord:
        return cls(
            message_id=raw["messageId"],
            body=raw.get("body", ""),
            receipt_handle=raw.get("receiptHandle", ""),
            receive_count=int(raw.get("attributes", {}).get("ApproximateReceiveCount", "1")),
            source_arn=raw.get("eventSourceARN", ""),
        )

"""Quarantine: records that can never be delivered, published whole with their reasons.

`undeliverable` catches what validation cannot see (a delivered message over SNS's limit);
`quarantine_message` is the quarantine topic's contract; `publish_quarantine` sends a batch's
poison to the topic and reports each record (acknowledged once the topic has it, retried if not).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from chalicelib.formats import sha256_hex
from chalicelib.ingest.fanout import OutboundMessage, publish_ordered
from chalicelib.ingest.report import BatchReport
from chalicelib.model import (
    QUARANTINE_RAW_LIMIT,
    SNS_MAX_MESSAGE_BYTES,
    CanonicalEvent,
    InvalidEvent,
    SqsRecord,
    delivered_message,
    message_attributes,
    sns_message_size,
)


def quarantine_message(record: SqsRecord, invalid: InvalidEvent, received_at: str) -> str:
    raw = record.body.encode("utf-8", errors="surrogatepass")
    return json.dumps(
        {
            "reason": invalid.reason,
            "errors": invalid.errors,
            "raw": raw[:QUARANTINE_RAW_LIMIT].decode("utf-8", errors="replace"),
            "raw_bytes": len(raw),
            "raw_sha256": sha256_hex(raw),
            "message_id": record.message_id,
            "received_at": received_at,
        },
        ensure_ascii=False,
    )


def undeliverable(event: CanonicalEvent, received_at: str) -> InvalidEvent | None:
    """`too_large` when the delivered message would exceed SNS's limit (key limits are the
    validation's; what SNS still refuses for good is poison once published, see `_settle`)."""
    # Sized as the larger of the two messages it may become: `false` is longer than `true`.
    message = delivered_message(event, received_at=received_at, late=False)
    body = OutboundMessage.from_message("size", message, event.event_id).body
    size = sns_message_size(body, message_attributes(message))
    if size <= SNS_MAX_MESSAGE_BYTES:
        return None
    limit = SNS_MAX_MESSAGE_BYTES
    return InvalidEvent(
        "too_large", {"_message": [f"delivered message is {size} bytes; SNS accepts {limit}"]}
    )


def publish_quarantine(
    sns: Any,
    topic_arn: str,
    invalid: Sequence[tuple[SqsRecord, InvalidEvent]],
    received_at: str,
    report: BatchReport,
) -> None:
    """Publish each poison record to the quarantine topic; a record the topic did not take is
    retried (and quarantined on its next try)."""
    if not invalid:
        return
    messages = [
        OutboundMessage(
            key=record.message_id,
            group=record.message_id,
            body=quarantine_message(record, problem, received_at),
            attributes={"reason": {"DataType": "String", "StringValue": problem.reason}},
            dedup_id=record.message_id,
        )
        for record, problem in invalid
    ]
    # Published right here, not through fan_out: this already runs as a task of the shared
    # pool, and waiting in one task for another deadlocks a pool that batches fill up.
    result = publish_ordered(sns, topic_arn, messages)
    for record, problem in invalid:
        if record.message_id in result.published:
            report.quarantined(record.message_id, problem)
        else:
            report.retried([record.message_id], "quarantine_publish_failed")

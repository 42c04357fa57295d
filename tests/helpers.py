"""Builders shared by the tests: CXone events and Lambda-shaped SQS events."""

from __future__ import annotations

import json
import uuid
from typing import Any


def cxone_event(
    interaction: str,
    stage: str = "Connected",
    sequence: int | None = None,
    *,
    event_id: str | None = None,
    timestamp: str | None = None,
    provider_event_id: str | None = None,
    **detail: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"interaction.id": interaction, "stage": stage, **detail}
    if sequence is not None:
        body["sequence"] = sequence
        body.setdefault(
            "timestamp", timestamp or f"2026-11-29T09:{sequence // 60:02d}:{sequence % 60:02d}.250Z"
        )
    elif timestamp:
        body["timestamp"] = timestamp
    if provider_event_id:
        body["eventId"] = provider_event_id
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "Interaction.Lifecycle.StageChanged",
        "source": "com.nice.cxone.interactions",
        "account": "123456789012",
        "time": "2026-11-29T09:00:01Z",
        "region": "us-east-1",
        "resources": [],
        "detail": body,
    }


def sqs_lambda_event(
    bodies: list[str | dict], queue_arn: str, receive_count: int = 1
) -> dict[str, Any]:
    """What Lambda's SQS event source hands the function (receipt handles are fake)."""
    records = []
    for body in bodies:
        text = body if isinstance(body, str) else json.dumps(body)
        records.append(
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "fake-" + uuid.uuid4().hex,
                "body": text,
                "attributes": {"ApproximateReceiveCount": str(receive_count)},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}

"""Builders shared by the tests: CXone events, Lambda-shaped SQS events, a seeded store."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from concurrent.futures import Executor
from datetime import datetime
from typing import Any

from chalicelib.config import Settings
from chalicelib.formats import utc_now
from chalicelib.store import layout as store
from tests.support.message_schemas import check_relay_body

# The delivered message's fields (the delivered-message contract): exactly these, no more.
DELIVERED_FIELDS = frozenset(
    {
        "event_id",
        "interaction_id",
        "participant_id",
        "detail_type",
        "stage",
        "state",
        "sequence",
        "occurred_at",
        "received_at",
        "late",
        "replay",
        "replay_job_id",
        "source",
        "event",
    }
)


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


def store_items(
    settings: Settings,
    messages: Sequence[dict[str, Any]],
    *,
    batch_size: int = 10,
    now: datetime | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(table, item) pairs for delivered messages, as the ingest pipeline's settle writes
    them: an events item per message and, per batch of `batch_size` messages in the given
    order, that batch's time-index items. Each message's dedup key is its event id."""
    now = now or utc_now()
    names = settings.names
    writes: list[tuple[str, dict[str, Any]]] = []
    for start in range(0, len(messages), batch_size):
        batch = messages[start : start + batch_size]
        for message in batch:
            item = store.event_item(
                message,
                dedup_key=message["event_id"],
                payload_sha256="0" * 64,
                retention_days=settings.store_retention_days,
                now=now,
            )
            writes.append((names.events_table, item))
        index_items = store.time_index_items(
            [(message, message["event_id"]) for message in batch],
            shards=settings.time_index_shards,
            retention_days=settings.store_retention_days,
            now=now,
        )
        writes += [(names.time_index_table, item) for item in index_items]
    return writes


def seed_store(
    dynamodb: Any,
    settings: Settings,
    messages: Sequence[dict[str, Any]],
    *,
    executor: Executor | None = None,
    batch_size: int = 10,
) -> None:
    """Store delivered messages as the pipeline does (see `store_items`), with BatchWriteItem
    (25 items per request, a few requests in flight when an executor is given)."""
    writes = store_items(settings, messages, batch_size=batch_size)

    def write(chunk: list[tuple[str, dict[str, Any]]]) -> None:
        pending: dict[str, list[dict[str, Any]]] = {}
        for table, item in chunk:
            pending.setdefault(table, []).append({"PutRequest": {"Item": item}})
        while pending:
            response = dynamodb.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}

    chunks = [writes[start : start + 25] for start in range(0, len(writes), 25)]
    if executor is None:
        for chunk in chunks:
            write(chunk)
    else:
        list(executor.map(write, chunks))


def drain_queue(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message on a queue (with its attributes), in order, deleted as read; delivered
    and quarantine messages checked against their schemas."""
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return messages
        for message in batch:
            check_relay_body(message["Body"])
        messages += batch
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(batch)
            ],
        )

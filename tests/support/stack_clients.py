"""Talking to a running local stack as a user does: only its stack.json, buses and queues.

Shared by the end-to-end suites: clients on the stack's moto, PutEvents that returns the
envelopes EventBridge delivers (with the ids it assigned, so a test can re-deliver one under
the same id, as EventBridge's at-least-once delivery does), and waits that poll with generous
deadlines instead of sleeping for a fixed time.
"""

from __future__ import annotations

import time
from typing import Any

import boto3

from scripts.traffic.simulate import put_events_entry, send_to_queue
from tests.support.local_stack import drain


def aws(stack: dict[str, Any], service: str) -> Any:
    session = boto3.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name=stack["region"]
    )
    return session.client(service, endpoint_url=stack["aws_endpoint_url"])


def put_on_bus(stack: dict[str, Any], bus: str, events: list[dict[str, Any]]) -> list[dict]:
    """PutEvents in tens; the events as the bus's targets receive them (EventBridge's ids)."""
    client = aws(stack, "events")
    delivered: list[dict[str, Any]] = []
    for start in range(0, len(events), 10):
        chunk = events[start : start + 10]
        response = client.put_events(Entries=[put_events_entry(e, bus) for e in chunk])
        assert response["FailedEntryCount"] == 0, response
        for event, entry in zip(chunk, response["Entries"], strict=True):
            delivered.append({**event, "id": entry["EventId"]})
    return delivered


def redeliver(stack: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """Each envelope again, same id and all, straight into the ingest queue: what EventBridge's
    at-least-once delivery to an SQS target does."""
    result = send_to_queue(aws(stack, "sqs"), stack["ingest_queue_url"], events)
    assert result.ok, result.failed


def wait_until_ingest_is_idle(stack: dict[str, Any], seconds: float) -> None:
    """Every message the ingest queue held was acknowledged (none waiting, none in flight)."""
    sqs = aws(stack, "sqs")
    deadline = time.monotonic() + seconds
    counts: dict[str, str] = {}
    while time.monotonic() < deadline:
        counts = sqs.get_queue_attributes(
            QueueUrl=stack["ingest_queue_url"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        if set(counts.values()) == {"0"}:
            return
        time.sleep(0.5)
    raise AssertionError(f"the ingest queue still holds messages: {counts}")


def dead_letters(stack: dict[str, Any]) -> int:
    attributes = aws(stack, "sqs").get_queue_attributes(
        QueueUrl=stack["ingest_dlq_url"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def deliveries_of(
    stack: dict[str, Any], want: int, seconds: float
) -> dict[str, list[dict[str, Any]]]:
    """Each consumer's deliveries, in arrival order: `want` of them (or what came in `seconds`),
    then, once ingest is idle, whatever else arrived (a repeat would show up there)."""
    sqs = aws(stack, "sqs")
    received = {
        consumer: drain(sqs, where["queue_url"], want, seconds)
        for consumer, where in stack["consumers"].items()
    }
    wait_until_ingest_is_idle(stack, seconds)
    for consumer, where in stack["consumers"].items():
        received[consumer] += drain(sqs, where["queue_url"], 1_000_000, 2)
    return received

"""The local event source mapping emulation, against a real moto SQS queue."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest

from scripts.local.runner import SqsPoller

VISIBILITY = 1  # seconds: failed records come back quickly


@pytest.fixture
def queue(aws_endpoint: str, boto_session) -> dict[str, Any]:
    sqs = boto_session.client("sqs")
    name = "runner-" + uuid.uuid4().hex[:8]
    dlq = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(VISIBILITY),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}),
        },
    )["QueueUrl"]
    arn = dlq_arn.removesuffix("-dlq")
    return {"sqs": sqs, "url": url, "arn": arn, "dlq": dlq}


class RecordingHandler:
    """A handler that fails chosen bodies (reported, or by raising) a given number of times."""

    def __init__(self, fail_bodies: dict[str, int], raise_bodies: dict[str, int]) -> None:
        self.fail_bodies = dict(fail_bodies)
        self.raise_bodies = dict(raise_bodies)
        self.seen: list[tuple[str, str]] = []  # (body, receive count)
        self.contexts: list[int] = []
        self.batches: list[list[tuple[str, str]]] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.contexts.append(context.get_remaining_time_in_millis())
        failures = []
        raise_now = False
        with self.lock:
            self.batches.append(
                [(r["body"], r["attributes"]["ApproximateReceiveCount"]) for r in event["Records"]]
            )
            for record in event["Records"]:
                body = record["body"]
                self.seen.append((body, record["attributes"]["ApproximateReceiveCount"]))
                if self.raise_bodies.get(body, 0) > 0:
                    self.raise_bodies[body] -= 1
                    raise_now = True
                if self.fail_bodies.get(body, 0) > 0:
                    self.fail_bodies[body] -= 1
                    failures.append({"itemIdentifier": record["messageId"]})
        if raise_now:
            raise RuntimeError("simulated crash of the whole invocation")
        return {"batchItemFailures": failures}


def run_poller(queue: dict, handler: RecordingHandler, seconds: float, **options: Any) -> SqsPoller:
    poller = SqsPoller(
        queue["sqs"],
        name="ingest",
        queue_url=queue["url"],
        queue_arn=queue["arn"],
        region="us-east-1",
        handler=handler,
        batch_size=options.get("batch_size", 10),
        batching_window_seconds=0.2,
        timeout_seconds=10,
        concurrency=options.get("concurrency", 2),
    )
    poller.start()
    time.sleep(seconds)
    poller.stop()
    return poller


def send(queue: dict, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        queue["sqs"].send_message_batch(
            QueueUrl=queue["url"],
            Entries=[
                {"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies[start : start + 10])
            ],
        )


def depth(queue: dict, url: str) -> int:
    attributes = queue["sqs"].get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_only_reported_failures_are_redelivered(queue):
    bodies = [f"m{n}" for n in range(15)]
    send(queue, bodies)
    handler = RecordingHandler(fail_bodies={"m3": 1, "m11": 1}, raise_bodies={})
    run_poller(queue, handler, seconds=4)

    counts = {b: sum(1 for seen, _ in handler.seen if seen == b) for b in bodies}
    assert counts == {b: (2 if b in ("m3", "m11") else 1) for b in bodies}
    second_tries = [count for body, count in handler.seen if body == "m3"]
    assert second_tries == ["1", "2"]
    assert depth(queue, queue["url"]) == 0
    assert max(handler.contexts) <= 10_000  # a Lambda-shaped context that counts down


def test_a_raised_exception_redelivers_the_whole_batch(queue):
    bodies = [f"r{n}" for n in range(5)]
    send(queue, bodies)
    handler = RecordingHandler(fail_bodies={}, raise_bodies={"r2": 1})
    run_poller(queue, handler, seconds=4, concurrency=1)

    crashed = next(batch for batch in handler.batches if ("r2", "1") in batch)
    redelivered = {body for body, count in handler.seen if count == "2"}
    # Every record that shared the crashed batch with r2 came back, and nothing else did.
    assert redelivered == {body for body, _ in crashed}
    assert depth(queue, queue["url"]) == 0


def test_a_poison_record_reaches_the_dlq_through_the_redrive_policy(queue):
    send(queue, ["poison", "fine"])
    handler = RecordingHandler(fail_bodies={"poison": 100}, raise_bodies={})
    run_poller(queue, handler, seconds=6)

    assert sum(1 for body, _ in handler.seen if body == "poison") == 3  # maxReceiveCount
    assert sum(1 for body, _ in handler.seen if body == "fine") == 1
    assert depth(queue, queue["dlq"]) == 1

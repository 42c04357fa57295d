"""Against the moto server: the traffic simulator's senders, and the DLQ list / re-drive script.

(The simulator's AWS tests live here too: they share the queue helpers.)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from scripts.operations import dlq
from scripts.traffic import simulate
from scripts.traffic.simulate import TrafficProfile, generate_traffic, send_to_bus, send_to_queue

SOURCE = "com.nice.cxone.interactions"


@pytest.fixture
def sqs(boto_session: boto3.Session) -> Any:
    return boto_session.client("sqs")


@pytest.fixture
def events_client(boto_session: boto3.Session) -> Any:
    return boto_session.client("events")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message on the queue, deleted as read."""
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )


def queued_count(sqs: Any, url: str) -> int:
    """Messages on the queue, visible or not."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def visible_count(sqs: Any, url: str) -> int:
    return int(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]["ApproximateNumberOfMessages"]
    )


# --------------------------------------------------------------------------- simulator


def test_send_to_queue_delivers_each_envelope_as_an_eventbridge_target_would(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=unique("ingest"))["QueueUrl"]
    items = generate_traffic(45, TrafficProfile(duplicate_ratio=0.2), seed=21)
    assert any(item.kind == "duplicate" for item in items)

    result = send_to_queue(sqs, url, [item.event for item in items])

    assert result.ok and result.sent == 45
    bodies = [json.loads(message["Body"]) for message in drain(sqs, url)]
    # Each emitted item arrives once, exactly the envelope: a duplicate keeps its id.
    assert sorted(map(canonical, bodies)) == sorted(canonical(item.event) for item in items)


@pytest.fixture
def bus_to_queue(sqs: Any, events_client: Any) -> Iterator[tuple[str, str]]:
    """A custom bus whose rule (source + CXone detail-types) targets a fresh SQS queue."""
    bus = unique("bus")
    events_client.create_event_bus(Name=bus)
    url = sqs.create_queue(QueueName=unique("target"))["QueueUrl"]
    rule = unique("rule")
    events_client.put_rule(
        Name=rule,
        EventBusName=bus,
        EventPattern=json.dumps(
            {
                "source": [SOURCE],
                "detail-type": ["Interaction.Lifecycle.StageChanged", "Routing.StateChanged"],
            }
        ),
    )
    events_client.put_targets(
        Rule=rule, EventBusName=bus, Targets=[{"Id": "ingest", "Arn": queue_arn(sqs, url)}]
    )
    yield bus, url
    events_client.remove_targets(Rule=rule, EventBusName=bus, Ids=["ingest"])
    events_client.delete_rule(Name=rule, EventBusName=bus)
    events_client.delete_event_bus(Name=bus)


def test_send_to_bus_reaches_a_queue_through_the_rule(
    sqs: Any, events_client: Any, bus_to_queue: tuple[str, str]
) -> None:
    bus, url = bus_to_queue
    items = generate_traffic(25, TrafficProfile(duplicate_ratio=0.2), seed=22)

    result = send_to_bus(events_client, bus, [item.event for item in items])

    assert result.ok and result.sent == 25
    delivered = [json.loads(message["Body"]) for message in drain(sqs, url)]
    assert len(delivered) == 25
    assert sorted(canonical(event["detail"]) for event in delivered) == sorted(
        canonical(item.event["detail"]) for item in items
    )
    assert {event["source"] for event in delivered} == {SOURCE}
    # EventBridge gave every entry its own id; a duplicate is still told apart by its eventId,
    # so the relay's dedup keys count exactly the distinct events the summary promises.
    assert len({event["id"] for event in delivered}) == 25
    dedup_keys = {
        (event["detail"]["interaction.id"], event["detail"].get("eventId") or event["id"])
        for event in delivered
    }
    summary = simulate.summarize(items)
    assert summary.duplicates > 0
    assert len(dedup_keys) == summary.valid + summary.invalid


def test_cli_sends_to_the_bus_named_in_the_local_stack_file(
    sqs: Any, bus_to_queue: tuple[str, str], aws_endpoint: str, tmp_path: Path
) -> None:
    bus, url = bus_to_queue
    stack_file = tmp_path / "stack.json"
    stack_file.write_text(
        json.dumps(
            {
                "aws_endpoint_url": aws_endpoint,
                "region": "us-east-1",
                "event_bus_name": bus,
                "event_source": SOURCE,
                "ingest_queue_url": "unused",
            }
        )
    )

    exit_code = simulate.main(
        ["--stack", str(stack_file), "--count", "30", "--rate", "1000", "--seed", "3"]
    )

    assert exit_code == 0
    assert len(drain(sqs, url)) == 30


def test_cli_sends_to_a_queue_url(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=unique("ingest"))["QueueUrl"]

    exit_code = simulate.main(["--queue-url", url, "--count", "12", "--rate", "1000"])

    assert exit_code == 0
    assert len(drain(sqs, url)) == 12


# --------------------------------------------------------------------------- DLQ


def queue_with_dlq(sqs: Any, queue_name: str, dlq_name: str) -> tuple[str, str]:
    """(queue, DLQ) URLs; the queue gives up on a message after its first receive."""
    dlq_url = sqs.create_queue(QueueName=dlq_name)["QueueUrl"]
    redrive_policy = {"deadLetterTargetArn": queue_arn(sqs, dlq_url), "maxReceiveCount": "1"}
    url = sqs.create_queue(
        QueueName=queue_name, Attributes={"RedrivePolicy": json.dumps(redrive_policy)}
    )["QueueUrl"]
    return url, dlq_url


def poison(sqs: Any, url: str, bodies: list[str]) -> None:
    """Send and fail each message past maxReceiveCount, so SQS moves it to the DLQ."""
    for i, body in enumerate(bodies):
        attributes = {"origin": {"DataType": "String", "StringValue": f"test-{i}"}}
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)
    for _ in range(len(bodies) + 2):
        if queued_count(sqs, url) == 0:
            return
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    raise AssertionError("SQS did not move the messages to the DLQ")


@pytest.fixture
def stage_queues(sqs: Any, relay_env: dict) -> tuple[str, str]:
    """The stage's ingest queue and ingest DLQ, named as chalicelib.config names them."""
    prefix = f"{relay_env['RELAY_APP']}-{relay_env['RELAY_STAGE']}"
    return queue_with_dlq(sqs, f"{prefix}-ingest", f"{prefix}-ingest-dlq")


def test_poisoned_messages_are_listed_and_left_in_the_dlq(
    sqs: Any, stage_queues: tuple[str, str], capsys: pytest.CaptureFixture
) -> None:
    ingest_url, dlq_url = stage_queues
    bodies = [json.dumps({"n": n, "pad": "x" * 150}) for n in range(12)]
    poison(sqs, ingest_url, bodies)
    assert queued_count(sqs, dlq_url) == 12

    peeked = dlq.peek_messages(sqs, dlq_url, 50)

    assert sorted(message.body for message in peeked) == sorted(bodies)
    assert all(message.receive_count >= 1 for message in peeked)
    assert all(len(message.preview) == 100 for message in peeked)
    assert visible_count(sqs, dlq_url) == 12  # visible again at once, not after a timeout

    assert dlq.main(["list", "--max", "5"]) == 0  # the stage's DLQ, from the settings
    output = capsys.readouterr().out
    assert "5 message(s)" in output and '{"n": ' in output
    assert visible_count(sqs, dlq_url) == 12


def test_redrive_moves_every_message_back_and_empties_the_dlq(
    sqs: Any, stage_queues: tuple[str, str]
) -> None:
    ingest_url, dlq_url = stage_queues
    bodies = [json.dumps({"n": n}) for n in range(23)]
    poison(sqs, ingest_url, bodies)
    assert queued_count(sqs, dlq_url) == 23 and queued_count(sqs, ingest_url) == 0

    assert dlq.main(["redrive"]) == 0  # the stage's ingest DLQ → ingest queue, by default

    assert queued_count(sqs, dlq_url) == 0
    moved = drain(sqs, ingest_url)
    assert sorted(message["Body"] for message in moved) == sorted(bodies)
    # Message attributes travel with the message.
    origins = {m["MessageAttributes"]["origin"]["StringValue"] for m in moved}
    assert origins == {f"test-{i}" for i in range(23)}


def test_redrive_dry_run_moves_nothing(sqs: Any, stage_queues: tuple[str, str]) -> None:
    ingest_url, dlq_url = stage_queues
    poison(sqs, ingest_url, ["a", "b", "c"])

    result = dlq.redrive(sqs, dlq_url, ingest_url, dry_run=True)
    assert dlq.main(["redrive", "--dry-run"]) == 0

    assert result.dry_run and result.moved == 0 and result.would_move == 3
    assert queued_count(sqs, ingest_url) == 0
    assert visible_count(sqs, dlq_url) == 3


def test_redrive_with_max_moves_only_that_many(sqs: Any) -> None:
    ingest_url, dlq_url = queue_with_dlq(sqs, unique("src"), unique("src-dlq"))
    poison(sqs, ingest_url, [f"m{n}" for n in range(7)])

    result = dlq.redrive(sqs, dlq_url, ingest_url, max_messages=4)

    assert result.moved == 4 and result.failed == []
    assert queued_count(sqs, ingest_url) == 4
    assert visible_count(sqs, dlq_url) == 3


def test_redrive_of_a_named_dlq_finds_its_source_queue(sqs: Any, aws_endpoint: str) -> None:
    ingest_url, dlq_url = queue_with_dlq(sqs, unique("other"), unique("other-dlq"))
    poison(sqs, ingest_url, ["one", "two"])
    dlq_name = dlq_url.rsplit("/", 1)[1]

    assert dlq.main(["redrive", "--queue", dlq_name, "--region", "us-east-1"]) == 0

    assert sorted(m["Body"] for m in drain(sqs, ingest_url)) == ["one", "two"]
    assert queued_count(sqs, dlq_url) == 0


def test_a_message_the_target_refuses_stays_in_the_dlq(sqs: Any) -> None:
    _, dlq_url = queue_with_dlq(sqs, unique("src"), unique("src-dlq"))
    # A target that refuses bodies over 1 KiB: a real refusal moto produces.
    small_target = sqs.create_queue(
        QueueName=unique("small"), Attributes={"MaximumMessageSize": "1024"}
    )["QueueUrl"]
    bodies = ["small-1", "x" * 2000, "small-2"]
    for body in bodies:
        sqs.send_message(QueueUrl=dlq_url, MessageBody=body)

    result = dlq.redrive(sqs, dlq_url, small_target)

    assert dlq.main(["redrive", "--queue", dlq_url, "--target", small_target]) == 1
    refused = {failure.message_id for failure in result.failed}
    assert refused and all(failure.step == "send" for failure in result.failed)
    # Nothing lost: each message is in exactly one of the two queues, the refused one in the DLQ.
    in_target = [m["Body"] for m in drain(sqs, small_target)]
    in_dlq = [m["Body"] for m in drain(sqs, dlq_url)]  # visible again at once
    assert sorted(in_target + in_dlq) == sorted(bodies)
    assert "x" * 2000 in in_dlq
    assert result.moved == len(in_target)


class RefusingOneEntry:
    """The real SQS client, except that SendMessageBatch refuses the entry with one body.

    moto accepts or refuses a whole batch; a per-entry failure (AWS's usual partial failure)
    can only be injected.
    """

    def __init__(self, sqs: Any, refused_body: str) -> None:
        self._sqs = sqs
        self._refused_body = refused_body

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
        refused = [e for e in Entries if e["MessageBody"] == self._refused_body]
        accepted = [e for e in Entries if e["MessageBody"] != self._refused_body]
        response = self._sqs.send_message_batch(QueueUrl=QueueUrl, Entries=accepted)
        response.setdefault("Failed", []).extend(
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            for e in refused
        )
        return response


def test_redrive_deletes_only_what_the_target_accepted(sqs: Any) -> None:
    ingest_url, dlq_url = queue_with_dlq(sqs, unique("src"), unique("src-dlq"))
    poison(sqs, ingest_url, [f"m{n}" for n in range(6)])

    result = dlq.redrive(RefusingOneEntry(sqs, "m3"), dlq_url, ingest_url)

    assert result.moved == 5
    assert [(f.step, f.error_code) for f in result.failed] == [("send", "InternalError")]
    assert sorted(m["Body"] for m in drain(sqs, ingest_url)) == ["m0", "m1", "m2", "m4", "m5"]
    assert [m["Body"] for m in drain(sqs, dlq_url)] == ["m3"]

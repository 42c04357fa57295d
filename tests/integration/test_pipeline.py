"""The ingest function against the moto server, invoked as Lambda would (chalice.test.Client).

Every consumer topic and the quarantine topic get an SQS subscriber with raw message
delivery, so what a test reads is what a real subscriber would. Failures moto cannot produce
(SNS failing one topic's entries) are injected on the runtime's own botocore client with a
`before-call` hook (tests/fakes.fault_hook), and each such test says what it simulates.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from random import Random
from typing import Any

import boto3
import pytest
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.config import DETAIL_TYPE_ROUTING
from chalicelib.ingest.batch import IngestBatch
from chalicelib.ingest.handler import BatchFailed
from chalicelib.model import (
    QUARANTINE_RAW_LIMIT,
    SNS_MAX_MESSAGE_BYTES,
    SqsRecord,
    delivered_message,
)
from chalicelib.providers.validation import validate_record
from chalicelib.runtime import Runtime, get_runtime, reset_runtime
from chalicelib.telemetry import TALLY
from tests.support import pipeline_model as properties
from tests.support.fakes import FakeAws, FakeClock, client_error, fault_hook
from tests.support.helpers import DELIVERED_FIELDS, cxone_event, drain_queue, sqs_lambda_event

RFC3339_MILLIS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@dataclass
class Delivered:
    body: dict[str, Any]
    attributes: dict[str, str]  # SNS message attributes, as raw delivery hands them to SQS


@dataclass
class Stage:
    """A provisioned stage with a raw-delivery SQS subscriber on every topic."""

    runtime: Runtime
    sqs: Any  # the test's own clients: request counts on the runtime's stay the function's
    sns: Any
    ingest_url: str
    ingest_arn: str
    consumer_queues: dict[str, str]
    quarantine_queue: str

    def invoke(self, lambda_event: dict[str, Any]) -> dict[str, Any]:
        """The `ingest` handler, as Lambda's SQS event source calls it."""
        import app as app_module

        with Client(app_module.app, stage_name="local") as client:
            return client.lambda_.invoke("ingest", lambda_event).payload

    def invoke_bodies(self, bodies: list[str | dict]) -> dict[str, Any]:
        return self.invoke(sqs_lambda_event(bodies, self.ingest_arn))

    def deliveries(self, consumer: str) -> list[Delivered]:
        return [
            Delivered(json.loads(m["Body"]), _attributes(m))
            for m in drain_queue(self.sqs, self.consumer_queues[consumer])
        ]

    def delivered_ids(self) -> dict[str, list[str]]:
        return {c: [d.body["event_id"] for d in self.deliveries(c)] for c in self.consumer_queues}

    def quarantined(self) -> dict[str, dict[str, Any]]:
        """Quarantine messages by the SQS message id of the record they stand for."""
        messages = [json.loads(m["Body"]) for m in drain_queue(self.sqs, self.quarantine_queue)]
        return {m["message_id"]: m for m in messages}

    def send_and_receive(self, bodies: list[str]) -> dict[str, Any]:
        """Put bodies on the real ingest queue and receive them back as a Lambda event, with
        real receipt handles (for visibility changes and deletes)."""
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.ingest_url, MessageBody=body)
        return self.receive(len(bodies))

    def receive(self, count: int) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while len(messages) < count and time.monotonic() < deadline:
            messages += self.sqs.receive_message(
                QueueUrl=self.ingest_url,
                MaxNumberOfMessages=min(10, count - len(messages)),
                WaitTimeSeconds=1,
                AttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
        assert len(messages) == count, f"received {len(messages)} of {count}"
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": {
                        "ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"]
                    },
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.ingest_arn,
                    "awsRegion": "us-east-1",
                }
                for m in messages
            ]
        }

    def ingest_queue_counts(self) -> tuple[int, int]:
        """(visible, in flight) messages on the ingest queue."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.ingest_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )


def _attributes(message: dict[str, Any]) -> dict[str, str]:
    attributes = message.get("MessageAttributes", {})
    assert all(a["DataType"] == "String" for a in attributes.values()), attributes
    return {name: a["StringValue"] for name, a in attributes.items()}


def subscribe(sqs: Any, sns: Any, topic_arn: str) -> str:
    url = sqs.create_queue(QueueName=f"sub-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    return url


def build_stage(runtime: Runtime, session: boto3.Session) -> Stage:
    sqs, sns = session.client("sqs"), session.client("sns")
    ingest_url = sqs.get_queue_url(QueueName=runtime.settings.names.ingest_queue)["QueueUrl"]
    ingest_arn = sqs.get_queue_attributes(QueueUrl=ingest_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    return Stage(
        runtime=runtime,
        sqs=sqs,
        sns=sns,
        ingest_url=ingest_url,
        ingest_arn=ingest_arn,
        consumer_queues={
            consumer: subscribe(sqs, sns, arn) for consumer, arn in runtime.consumer_topics.items()
        },
        quarantine_queue=subscribe(sqs, sns, runtime.quarantine_topic),
    )


@pytest.fixture(autouse=True)
def report_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read the function's batchItemFailures, as a mapping with
    ReportBatchItemFailures does ("report" mode); the default ("raise") has its own tests."""
    monkeypatch.setenv("RELAY_BATCH_FAILURE_MODE", "report")


@pytest.fixture
def stage(provisioned: Runtime, boto_session: boto3.Session) -> Stage:
    return build_stage(provisioned, boto_session)


@pytest.fixture
def restage(
    provisioned: Runtime, boto_session: boto3.Session, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Stage]:
    """The same provisioned stage, with settings changed through the environment (as a
    deployment's config.json would) and a fresh runtime."""

    def build(**environment: str) -> Stage:
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        reset_runtime()
        return build_stage(get_runtime(), boto_session)

    return build


def event(interaction: str, sequence: int | None = None, **detail: Any) -> dict[str, Any]:
    return cxone_event(interaction, detail.pop("stage", "Connected"), sequence, **detail)


def body_sha256(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8", errors="surrogatepass")).hexdigest()


# --------------------------------------------------------------------------- bad records


def bad_records() -> dict[str, tuple[str, str, dict[str, str]]]:
    """name -> (body, reason, {field: words its message must contain})."""

    def spoiled(**detail: Any) -> dict[str, Any]:
        spoilt = event("int-spoilt", 1)
        spoilt["detail"].update(detail)
        return spoilt

    deep = json.dumps(spoiled(metadata={"deep": "HERE"})).replace('"HERE"', "[" * 5000 + "]" * 5000)
    surrogate = json.dumps(spoiled(note="HERE")).replace('"HERE"', '"\ud800"')
    return {
        "not json": ("this is not JSON {", "unparseable", {"_body": "not valid JSON"}),
        "not an object": ('["an", "array"]', "invalid", {"_body": "JSON object"}),
        "missing fields": (
            json.dumps(
                {
                    "source": "com.nice.cxone.interactions",
                    "detail-type": "Interaction.Lifecycle.StageChanged",
                    "detail": {},
                }
            ),
            "invalid",
            {
                "id": "required",
                "time": "required",
                "detail.interaction.id": "required",
                "detail.stage": "required",
            },
        ),
        "wrong types": (
            json.dumps(spoiled(**{"sequence": "3", "interaction.id": 42})),
            "invalid",
            {"detail.sequence": "'3'", "detail.interaction.id": "42"},
        ),
        "unknown stage": (
            json.dumps(spoiled(stage="Teleported")),
            "invalid",
            {"detail.stage": "'Teleported' is not an allowed stage"},
        ),
        "300 KB metadata": (
            json.dumps(spoiled(metadata={"blob": "x" * 300_000})),
            "invalid",
            {"detail.metadata": "the limit is 16,384"},
        ),
        "NaN": (json.dumps(spoiled(sequence=math.nan)), "unparseable", {"_body": "NaN"}),
        "5,000-deep nesting": (deep, "unparseable", {"_body": "nested deeper than"}),
        "lone surrogate": (surrogate, "unparseable", {"_body": "lone surrogate"}),
    }


def test_bad_records_are_quarantined_with_their_reasons_and_the_rest_is_delivered(
    stage: Stage,
) -> None:
    bad = bad_records()
    good = [event("int-ok-1", 1), event("int-ok-1", 2), event("int-ok-2", stage="Queued")]
    names = list(bad)
    # Two Lambda-sized batches, each mixing bad records with good ones.
    first = [good[0], *(bad[n][0] for n in names[:5]), good[1]]
    second = [*(bad[n][0] for n in names[5:]), good[2]]
    lambda_events = [sqs_lambda_event(first, stage.ingest_arn)]
    lambda_events.append(sqs_lambda_event(second, stage.ingest_arn))
    for lambda_event in lambda_events:
        # Every record is acknowledged: the bad ones are set aside, not retried.
        assert stage.invoke(lambda_event) == {"batchItemFailures": []}

    good_ids = sorted(e["id"] for e in good)
    for consumer, ids in stage.delivered_ids().items():
        assert sorted(ids) == good_ids, consumer

    records = [r for e in lambda_events for r in e["Records"]]
    by_body = {r["body"]: r for r in records}
    quarantined = stage.quarantined()
    assert len(quarantined) == len(bad)
    for name, (body, reason, expected) in bad.items():
        record = by_body[body]
        message = quarantined[record["messageId"]]
        assert message["reason"] == reason, name
        for field_name, words in expected.items():
            assert any(words in text for text in message["errors"][field_name]), (
                name,
                message["errors"],
            )
        raw = body.encode("utf-8", errors="surrogatepass")
        assert message["raw_bytes"] == len(raw), name
        assert message["raw_sha256"] == body_sha256(body), name
        assert len(message["raw"].encode()) <= QUARANTINE_RAW_LIMIT + 3, name  # a cut character
        assert RFC3339_MILLIS_Z.match(message["received_at"]), name
        if name == "lone surrogate":
            assert "\ufffd" in message["raw"]  # readable text, the bad code point replaced
        elif len(raw) <= QUARANTINE_RAW_LIMIT:
            assert message["raw"] == body, name
        else:
            assert message["raw"] == body[:QUARANTINE_RAW_LIMIT], name
    print("\nquarantine reasons:")
    for name, (body, _, _) in bad.items():
        message = quarantined[by_body[body]["messageId"]]
        print(f"  {name:20} {message['reason']:12} {json.dumps(message['errors'])[:110]}")


def delivered_size(envelope: dict[str, Any], *, late: bool) -> int:
    """Bytes SNS counts for the message the relay would publish: the body as the relay encodes
    it (compact JSON, UTF-8) plus every attribute's name, type and value."""
    canonical = validate_record(json.dumps(envelope), get_runtime().settings)
    message = delivered_message(canonical, received_at="2026-11-29T09:00:00.000Z", late=late)
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    attributes = {
        name: str(message[name])
        for name in ("detail_type", "interaction_id", "stage", "state")
        if message[name] is not None
    }
    attributes |= {name: "true" if message[name] else "false" for name in ("late", "replay")}
    size = len(body.encode())
    for name, value in attributes.items():
        size += len(name) + len("String") + len(value.encode())
    return size


def padded(interaction: str, size: int) -> dict[str, Any]:
    """An event (its detail padded with an unknown key) whose delivered message, not late, is
    `size` bytes. Unknown detail keys are passed on; metadata is capped at 16 KB."""
    envelope = event(interaction, 1, transcript="")
    envelope["detail"]["transcript"] = "x" * (size - delivered_size(envelope, late=False))
    assert delivered_size(envelope, late=False) == size
    return envelope


def test_an_event_too_large_for_sns_is_quarantined_as_too_large(stage: Stage) -> None:
    huge = event("int-huge", 1, transcript="x" * 300_000)
    over = padded("int-over", SNS_MAX_MESSAGE_BYTES + 1)
    # `late: true` is two bytes shorter than `late: false`: a size check made with the wrong
    # flag lets this one through, and SNS would then refuse it on every retry.
    assert delivered_size(over, late=True) <= SNS_MAX_MESSAGE_BYTES
    fits = padded("int-fits", SNS_MAX_MESSAGE_BYTES)
    lambda_event = sqs_lambda_event([huge, over, fits], stage.ingest_arn)

    assert stage.invoke(lambda_event) == {"batchItemFailures": []}

    for consumer, ids in stage.delivered_ids().items():
        assert ids == [fits["id"]], consumer
    quarantined = stage.quarantined()
    records = {json.loads(r["body"])["id"]: r for r in lambda_event["Records"]}
    for envelope in (huge, over):
        record = records[envelope["id"]]
        message = quarantined[record["messageId"]]
        assert message["reason"] == "too_large"
        assert "bytes" in message["errors"]["_message"][0]
        assert message["raw_bytes"] == len(record["body"].encode())
        assert message["raw"] == record["body"][:QUARANTINE_RAW_LIMIT]
        assert message["raw_sha256"] == body_sha256(record["body"])
    assert len(quarantined) == 2


# --------------------------------------------------------------------------- delivery


def test_the_delivered_message_and_its_attributes_follow_the_contract(stage: Stage) -> None:
    staged = event(
        "int-contract",
        2,
        **{"participant.id": "agent-17", "metadata": {"skill": "billing"}, "queueName": "vip"},
    )
    staged["detail"]["timestamp"] = "2026-11-29T09:00:01.250Z"
    routing = cxone_event("int-contract-2", timestamp="2026-11-29T11:00:02.5+02:00")
    routing["detail-type"] = DETAIL_TYPE_ROUTING
    del routing["detail"]["stage"]
    routing["detail"]["state"] = "Available"

    assert stage.invoke_bodies([staged, routing]) == {"batchItemFailures": []}

    for consumer in stage.consumer_queues:
        deliveries = {d.body["event_id"]: d for d in stage.deliveries(consumer)}
        assert set(deliveries) == {staged["id"], routing["id"]}
        for delivered in deliveries.values():
            assert set(delivered.body) == DELIVERED_FIELDS
            assert RFC3339_MILLIS_Z.match(delivered.body["received_at"])
            assert delivered.body["late"] is False and delivered.body["replay"] is False
            assert delivered.body["replay_job_id"] is None
            assert delivered.body["source"] == "com.nice.cxone.interactions"

        first = deliveries[staged["id"]]
        assert first.body["event"] == staged  # as received, unknown detail keys included
        assert first.body | {"received_at": None, "event": None} == {
            "event_id": staged["id"],
            "interaction_id": "int-contract",
            "participant_id": "agent-17",
            "detail_type": "Interaction.Lifecycle.StageChanged",
            "stage": "Connected",
            "state": None,
            "sequence": 2,
            "occurred_at": "2026-11-29T09:00:01.250Z",
            "received_at": None,
            "late": False,
            "replay": False,
            "replay_job_id": None,
            "source": "com.nice.cxone.interactions",
            "event": None,
        }
        # All String attributes, the null ones (state) left out, so filters can match.
        assert first.attributes == {
            "detail_type": "Interaction.Lifecycle.StageChanged",
            "interaction_id": "int-contract",
            "stage": "Connected",
            "late": "false",
            "replay": "false",
        }

        second = deliveries[routing["id"]]
        assert second.body["occurred_at"] == "2026-11-29T09:00:02.500Z"  # UTC, millis, Z
        assert (second.body["stage"], second.body["state"]) == (None, "Available")
        assert second.body["participant_id"] is None and second.body["sequence"] is None
        assert second.attributes == {
            "detail_type": DETAIL_TYPE_ROUTING,
            "interaction_id": "int-contract-2",
            "state": "Available",
            "late": "false",
            "replay": "false",
        }


def test_duplicates_across_batches_are_acknowledged_and_not_delivered_again(
    stage: Stage,
) -> None:
    provider = event("int-dup", 1, provider_event_id="cxone-evt-1")
    plain = event("int-dup", 2)
    assert stage.invoke_bodies([provider, plain]) == {"batchItemFailures": []}
    first = stage.delivered_ids()

    resent = json.loads(json.dumps(provider)) | {"id": str(uuid.uuid4())}  # new envelope id
    conflicting = json.loads(json.dumps(resent)) | {"id": str(uuid.uuid4())}
    conflicting["detail"]["stage"] = "WrapUp"  # same provider id, another payload: first wins
    result = stage.invoke_bodies([provider, resent, plain, conflicting, plain])

    assert result == {"batchItemFailures": []}
    assert first == {c: [provider["id"], plain["id"]] for c in stage.consumer_queues}
    assert stage.delivered_ids() == {c: [] for c in stage.consumer_queues}


def test_an_event_older_than_one_already_sent_is_delivered_flagged_late(stage: Stage) -> None:
    newer, older, newest = event("int-late", 5), event("int-late", 3), event("int-late", 6)
    for envelope in (newer, older, newest):
        assert stage.invoke_bodies([envelope]) == {"batchItemFailures": []}

    for consumer in stage.consumer_queues:
        deliveries = stage.deliveries(consumer)
        assert [(d.body["sequence"], d.body["late"]) for d in deliveries] == [
            (5, False),
            (3, True),
            (6, False),
        ]
        assert [d.attributes["late"] for d in deliveries] == ["false", "true", "false"]


def test_with_mixed_keys_late_is_decided_by_time(stage: Stage) -> None:
    """Sequences and times mixed in one interaction: compared by time. Sequence 9 is above
    every sequence sent, but it happened before an unsequenced event already sent."""
    sequenced = event("int-mixed", 3, timestamp="2026-11-29T09:00:01.000Z")
    unsequenced = event("int-mixed", timestamp="2026-11-29T09:00:05.000Z")
    older_by_time = event("int-mixed", 9, timestamp="2026-11-29T09:00:02.000Z")
    for envelope in (sequenced, unsequenced, older_by_time):
        assert stage.invoke_bodies([envelope]) == {"batchItemFailures": []}

    for consumer in stage.consumer_queues:
        late = [(d.body["event_id"], d.body["late"]) for d in stage.deliveries(consumer)]
        assert late == [
            (sequenced["id"], False),
            (unsequenced["id"], False),
            (older_by_time["id"], True),
        ]


def test_a_conflicting_resend_while_the_first_copy_is_in_flight_never_takes_over(
    stage: Stage,
) -> None:
    """Simulates (moto cannot) SNS failing crm-updater's entries for the first attempt, so
    the first copy of provider event `evt-1` stays in flight; a re-send under the same
    provider id with another payload then arrives alone. It waits (failed, retried) instead of
    being published; the first copy's retry finishes, and then the re-send is a duplicate,
    counted as a conflict. Consumers and the store only ever see the first payload."""
    crm_topic = stage.runtime.consumer_topics["crm-updater"]
    restore = fail_entries(stage, lambda topic, _: topic == crm_topic)
    first = event("int-conflict", 1, provider_event_id="evt-1", note="first")
    resend = event("int-conflict", 1, provider_event_id="evt-1", note="second")
    # It reaches two consumers of three: in flight.
    assert len(stage.invoke_bodies([first])["batchItemFailures"]) == 1
    restore()

    response = stage.invoke_bodies([resend])
    assert len(response["batchItemFailures"]) == 1  # waits for the first copy
    assert stage.invoke_bodies([first]) == {"batchItemFailures": []}  # the first one's retry
    conflicts = TALLY.snapshot().get("Conflicts", 0)
    assert stage.invoke_bodies([resend]) == {"batchItemFailures": []}  # now a duplicate
    assert TALLY.snapshot().get("Conflicts", 0) == conflicts + 1

    for consumer in stage.consumer_queues:
        notes = [d.body["event"]["detail"]["note"] for d in stage.deliveries(consumer)]
        assert notes == ["first"], consumer
    # The events table item is the dedup record: it holds the first payload's fingerprint.
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    items = dynamodb.query(
        TableName=stage.runtime.settings.names.events_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "int-conflict"}},
    )["Items"]
    assert [item["sha"]["S"] for item in items] == [
        validate_record(json.dumps(first), stage.runtime.settings).payload_sha256
    ]


def holding_record(stage: Stage, body: dict[str, Any], holder: str) -> Any:
    """Write the interaction record as another invocation leaves it while it publishes `body`
    (its claim and lease just taken); returns that record."""
    from chalicelib.ingest.claims import InflightClaim, InteractionRecord
    from chalicelib.ingest.ledger import encode_record
    from chalicelib.ingest.ordering import HighWaterMark

    canonical = validate_record(json.dumps(body), stage.runtime.settings)
    now_ms = int(time.time() * 1000)
    claim = InflightClaim(
        dedup_key=canonical.dedup_key,
        event_id=canonical.event_id,
        sequence=canonical.sequence,
        occurred_at=canonical.occurred_at,
        late=False,
        received_at=canonical.occurred_at,
        claimed_at_ms=now_ms,
    )
    record = InteractionRecord(
        canonical.interaction_id,
        version=1,
        lease_owner=holder,
        lease_until_ms=now_ms + 60_000,
        hwm=HighWaterMark().advance(canonical),
        inflight={claim.dedup_key: claim},
    )
    boto3.client("dynamodb", region_name="us-east-1").put_item(
        TableName=stage.runtime.settings.names.ledger_table, Item=encode_record(record, 0)
    )
    return record


def test_a_record_bounced_by_a_busy_interaction_keeps_its_place(stage: Stage) -> None:
    """FIFO-like order: sequence 2 arrives while another invocation holds the interaction
    (simulated: its record is written here as that holder left it, mid-publish of sequence
    1), so it cannot be claimed. Sequence 3 arrives after the holder finished; it waits for 2
    instead of overtaking it, and 2 is delivered on time, not `late`."""
    from chalicelib.ingest.ledger import decode_record, encode_record

    first, second, third = (event("int-fifo", n) for n in (1, 2, 3))
    settings = stage.runtime.settings
    holding_record(stage, first, "another-invocation")
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")

    assert len(stage.invoke_bodies([second])["batchItemFailures"]) == 1  # busy: retried
    # The holder delivered sequence 1 and released the interaction (keeping the arrival mark
    # that sequence 2 left meanwhile, as its release does).
    key = {"pk": {"S": "int-fifo"}}
    table = settings.names.ledger_table
    now = decode_record("int-fifo", dynamodb.get_item(TableName=table, Key=key)["Item"])
    assert set(now.marks) == {validate_record(json.dumps(second), settings).dedup_key}
    released = replace(now, version=now.version + 1, lease_owner=None, lease_until_ms=0)
    dynamodb.put_item(TableName=table, Item=encode_record(replace(released, inflight={}), 0))
    assert len(stage.invoke_bodies([third])["batchItemFailures"]) == 1  # waits for 2
    assert stage.invoke_bodies([second]) == {"batchItemFailures": []}
    assert stage.invoke_bodies([third]) == {"batchItemFailures": []}

    for consumer in stage.consumer_queues:
        received = [(d.body["sequence"], d.body["late"]) for d in stage.deliveries(consumer)]
        assert received == [(2, False), (3, False)], consumer


def test_a_batch_waits_its_turn_in_the_invocation_while_the_holder_finishes(
    stage: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another invocation holds the interaction, publishing sequence 1, when sequence 2
    arrives: the batch pauses and plans again in the same invocation, and once the holder has
    released the interaction (simulated during the second pause) it delivers sequence 2 on
    time; nothing goes back to the queue."""
    from chalicelib.ingest.ledger import decode_record, encode_record

    first, second = event("int-turn", 1), event("int-turn", 2)
    holding_record(stage, first, "another-invocation")
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    table, key = stage.runtime.settings.names.ledger_table, {"pk": {"S": "int-turn"}}
    pauses: list[float] = []

    def holder_finishes_during_a_pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:  # the holder releases (sequence 1 at every consumer)
            now = decode_record("int-turn", dynamodb.get_item(TableName=table, Key=key)["Item"])
            released = replace(
                now, version=now.version + 1, lease_owner=None, lease_until_ms=0, inflight={}
            )
            dynamodb.put_item(TableName=table, Item=encode_record(released, 0))

    monkeypatch.setattr("chalicelib.ingest.batch.sleep", holder_finishes_during_a_pause)

    assert stage.invoke_bodies([second]) == {"batchItemFailures": []}
    assert len(pauses) == 2
    for consumer in stage.consumer_queues:
        assert [(d.body["sequence"], d.body["late"]) for d in stage.deliveries(consumer)] == [
            (2, False)
        ], consumer


def test_a_batch_stops_waiting_its_turn_once_nothing_moves(
    stage: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder crashed (its lease stays for a minute): nothing changes while the batch
    waits, so it gives up after TURN_STALL_SECONDS of pauses, long before RELAY_TURN_WAIT_MS,
    and its record goes back to the queue for the reason, its arrival mark kept."""
    from chalicelib.ingest.batch import TURN_PAUSE_MAX_SECONDS, TURN_STALL_SECONDS
    from chalicelib.ingest.ledger import decode_record

    first, second = event("int-stall", 1), event("int-stall", 2)
    holding_record(stage, first, "a-crashed-invocation")
    pauses: list[float] = []
    monkeypatch.setattr("chalicelib.ingest.batch.sleep", pauses.append)
    TALLY.reset()

    assert len(stage.invoke_bodies([second])["batchItemFailures"]) == 1
    assert TALLY.snapshot().get("Retried:interaction_busy") == 1
    assert TURN_STALL_SECONDS <= sum(pauses) <= TURN_STALL_SECONDS + TURN_PAUSE_MAX_SECONDS
    assert sum(pauses) * 1000 < stage.runtime.settings.turn_wait_ms
    table, key = stage.runtime.settings.names.ledger_table, {"pk": {"S": "int-stall"}}
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(TableName=table, Key=key)
    record = decode_record("int-stall", item["Item"])
    assert set(record.marks) == {
        validate_record(json.dumps(second), stage.runtime.settings).dedup_key
    }


def test_interaction_records_outlive_every_record_that_can_come_back(stage: Stage) -> None:
    """A record may wait out the DLQ's retention and then, re-driven, the ingest queue's: its
    interaction's high-water mark must still be there (or it goes out `late: false`)."""
    assert stage.invoke_bodies([event("int-ttl", 1)]) == {"batchItemFailures": []}
    names = stage.runtime.settings.names
    retention = 0
    for queue in (names.ingest_queue, names.ingest_dlq):
        url = stage.sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        attributes = stage.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["MessageRetentionPeriod"]
        )["Attributes"]
        retention += int(attributes["MessageRetentionPeriod"])
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    record = dynamodb.get_item(TableName=names.ledger_table, Key={"pk": {"S": "int-ttl"}})["Item"]
    assert int(record["expires_at"]["N"]) - time.time() >= retention - 60


# --------------------------------------------------------------------------- failures


def fail_entries(
    stage: Stage, should_fail: Callable[[str, dict[str, Any]], bool], code: str = "InternalError"
) -> Callable[[], None]:
    """Make SNS fail the PublishBatch entries `should_fail(topic, message)` picks and accept
    the others: what SNS reports when, e.g., a topic's KMS key throttles. moto cannot, so the
    function's request is answered here: the accepted entries are published to moto with
    the test's own client, the rest reported Failed."""

    def respond(params: dict[str, Any]) -> dict[str, Any] | None:
        entries = params["PublishBatchRequestEntries"]
        failing = [e for e in entries if should_fail(params["TopicArn"], json.loads(e["Message"]))]
        if not failing:
            return None
        accepted = [e for e in entries if e not in failing]
        if accepted:
            stage.sns.publish_batch(
                TopicArn=params["TopicArn"], PublishBatchRequestEntries=accepted
            )
        return {
            "Successful": [{"Id": e["Id"], "MessageId": uuid.uuid4().hex} for e in accepted],
            "Failed": [
                {
                    "Id": e["Id"],
                    "Code": code,
                    "SenderFault": code != "InternalError",
                    "Message": "x",
                }
                for e in failing
            ],
        }

    return fault_hook(stage.runtime.sns, "PublishBatch", respond)


def record_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    """The parameters of every `operation` call the client makes (they still go out)."""
    calls: list[dict[str, Any]] = []

    def remember(params: dict[str, Any]) -> None:
        calls.append(params)

    fault_hook(client, operation, remember)
    return calls


def test_a_partly_failed_publish_is_retried_soon_and_only_to_the_consumer_that_missed_it(
    restage: Callable[..., Stage],
) -> None:
    stage = restage(RELAY_BACKOFF_BASE_SECONDS="1", RELAY_BACKOFF_MAX_SECONDS="8")
    crm_topic = stage.runtime.consumer_topics["crm-updater"]
    # Simulated (moto cannot): SNS fails every entry for crm-updater, accepts the others.
    restore = fail_entries(stage, lambda topic, _: topic == crm_topic)
    visibility_calls = record_calls(stage.runtime.sqs, "ChangeMessageVisibilityBatch")
    envelope = event("int-partial", 1)
    lambda_event = stage.send_and_receive([json.dumps(envelope)])
    message_id = lambda_event["Records"][0]["messageId"]

    assert stage.invoke(lambda_event) == {"batchItemFailures": [{"itemIdentifier": message_id}]}

    # Its visibility is set to the first backoff (1 s), not left at the queue's 60 s.
    assert [e["VisibilityTimeout"] for c in visibility_calls for e in c["Entries"]] == [1]
    assert stage.ingest_queue_counts() == (0, 1)
    time.sleep(1.5)
    assert stage.ingest_queue_counts() == (1, 0)
    first = stage.delivered_ids()
    assert first == {
        "analytics-sink": [envelope["id"]],
        "crm-updater": [],
        "agent-dashboard": [envelope["id"]],
    }

    restore()
    retry = stage.receive(1)
    assert retry["Records"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert stage.invoke(retry) == {"batchItemFailures": []}
    # Only the consumer that missed it gets it now; nobody gets it twice.
    assert stage.delivered_ids() == {
        "analytics-sink": [],
        "crm-updater": [envelope["id"]],
        "agent-dashboard": [],
    }


def test_an_entry_sns_refuses_for_good_is_quarantined_and_holds_nothing_back(
    stage: Stage,
) -> None:
    """Simulates (moto cannot) SNS refusing one event's entry on one topic with
    InvalidParameter, as it refuses an empty attribute value: retrying cannot fix that, so the
    record is quarantined with the reason, its neighbours are delivered, the batch does not
    fail, and the interaction's next event is not held back by the refused one."""
    crm_topic = stage.runtime.consumer_topics["crm-updater"]
    refused = event("int-refused", 1)
    fail_entries(
        stage,
        lambda topic, message: topic == crm_topic and message.get("event_id") == refused["id"],
        code="InvalidParameter",
    )
    neighbour = event("int-neighbour", 1)
    lambda_event = stage.send_and_receive([json.dumps(refused), json.dumps(neighbour)])
    refused_message_id = next(
        r["messageId"]
        for r in lambda_event["Records"]
        if json.loads(r["body"])["id"] == refused["id"]
    )

    assert stage.invoke(lambda_event) == {"batchItemFailures": []}

    quarantined = stage.quarantined()
    assert list(quarantined) == [refused_message_id]
    assert quarantined[refused_message_id]["reason"] == "invalid"
    assert "InvalidParameter" in quarantined[refused_message_id]["errors"]["_publish"][0]
    assert stage.delivered_ids()["crm-updater"] == [neighbour["id"]]
    later = event("int-refused", 2)
    assert stage.invoke_bodies([later]) == {"batchItemFailures": []}
    assert stage.delivered_ids()["crm-updater"] == [later["id"]]


def test_a_request_sns_refuses_as_a_whole_is_resent_entry_by_entry(stage: Stage) -> None:
    """Simulates (moto cannot) SNS refusing a whole PublishBatch with InvalidParameter because
    of one entry: the entries go again one per request, so only that one is poison."""
    spoiler = event("int-spoiler", 1)

    def refuse(params: dict[str, Any]) -> BaseException | None:
        entries = params["PublishBatchRequestEntries"]
        ids = [json.loads(e["Message"]).get("event_id") for e in entries]
        if spoiler["id"] in ids:
            return client_error("InvalidParameter", "PublishBatch", "empty attribute value")
        return None

    fault_hook(stage.runtime.sns, "PublishBatch", refuse)
    others = [event(f"int-spoiled-{n}", 1) for n in range(3)]

    assert stage.invoke_bodies([spoiler, *others]) == {"batchItemFailures": []}

    assert [q["reason"] for q in stage.quarantined().values()] == ["invalid"]
    for consumer, ids in stage.delivered_ids().items():
        assert sorted(ids) == sorted(e["id"] for e in others), consumer


def test_without_batch_item_failures_the_successes_are_deleted_and_the_batch_raises(
    restage: Callable[..., Stage],
) -> None:
    """For an event source mapping without ReportBatchItemFailures (RELAY_BATCH_FAILURE_MODE
    raise): Lambda would retry the whole batch, so the function deletes what succeeded."""
    stage = restage(RELAY_BATCH_FAILURE_MODE="raise")
    # Simulated (moto cannot): SNS fails the entries of one interaction on every topic.
    fail_entries(stage, lambda _, message: message["interaction_id"] == "int-doomed")
    bodies = [event("int-fine-1", 1), event("int-doomed", 1), event("int-fine-2", 1)]
    lambda_event = stage.send_and_receive([json.dumps(b) for b in bodies])

    with pytest.raises(BatchFailed, match="1 of 3 records failed"):
        stage.invoke(lambda_event)

    # The two delivered records are gone from the queue; the failed one is back (backoff 0).
    assert stage.ingest_queue_counts() == (1, 0)
    (left,) = stage.receive(1)["Records"]
    assert json.loads(left["body"])["id"] == bodies[1]["id"]
    for consumer, ids in stage.delivered_ids().items():
        assert sorted(ids) == sorted([bodies[0]["id"], bodies[2]["id"]]), consumer


def test_with_too_little_time_left_nothing_is_claimed_and_every_record_fails(
    restage: Callable[..., Stage], boto_session: boto3.Session
) -> None:
    # The invocation has the stage's ingest timeout (30 s); a longer margin leaves no time to
    # start.
    stage = restage(RELAY_DEADLINE_MARGIN_MS="31000")
    lambda_event = sqs_lambda_event(
        [event("int-hurry", 1), event("int-hurry", 2), event("int-rush", 1)], stage.ingest_arn
    )

    result = stage.invoke(lambda_event)

    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == sorted(
        r["messageId"] for r in lambda_event["Records"]
    )
    dynamodb = boto_session.client("dynamodb")
    ledger = dynamodb.scan(TableName=stage.runtime.settings.names.ledger_table)
    assert ledger["Items"] == []  # no claim, no lease: another invocation may take them now
    assert stage.delivered_ids() == {c: [] for c in stage.consumer_queues}


def test_quarantine_needs_no_free_worker_of_the_shared_pool(stage: Stage) -> None:
    """Several batches share one process's pool (the local stack runs them on threads): a
    batch must not wait inside one pool task for another (a full pool would deadlock)."""
    runtime = replace(stage.runtime, executor=ThreadPoolExecutor(max_workers=1))
    records = [
        SqsRecord.from_lambda(r)
        for r in sqs_lambda_event(["not json", event("int-pool", 1)], stage.ingest_arn)["Records"]
    ]
    outcome: list[Any] = []
    worker = threading.Thread(
        target=lambda: outcome.append(IngestBatch(runtime, records, None).run()), daemon=True
    )
    worker.start()
    worker.join(timeout=15)
    # Cancelling what is queued frees a deadlocked pool, so a regression fails, not hangs.
    runtime.executor.shutdown(wait=False, cancel_futures=True)
    assert outcome, "the batch never finished"
    assert sorted(outcome[0].acknowledged.values()) == ["delivered", "quarantined"]


# --------------------------------------------------------------------------- cost


@contextmanager
def counting_requests(runtime: Runtime) -> Iterator[Counter[str]]:
    """AWS requests the function's own clients make: "service.Operation" and, for
    PublishBatch, "PublishBatch:<topic arn>" (botocore event hooks)."""
    counts: Counter[str] = Counter()

    def count(event_name: str, params: dict[str, Any], **_: Any) -> None:
        _, service, operation = event_name.split(".")
        counts[f"{service}.{operation}"] += 1
        if operation == "PublishBatch":
            counts[f"PublishBatch:{params['TopicArn']}"] += 1

    clients = [runtime.dynamodb, runtime.sns, runtime.sqs]
    for client in clients:
        client.meta.events.register("before-parameter-build.*.*", count)
    try:
        yield counts
    finally:
        for client in clients:
            client.meta.events.unregister("before-parameter-build.*.*", count)


def requests_of(counts: Counter[str], service: str) -> int:
    return sum(n for key, n in counts.items() if key.startswith(f"{service}."))


def test_request_counts_per_event_interaction_and_consumer(stage: Stage) -> None:
    """Happy path: one UpdateItem per interaction (the arrival marks, reading the record back),
    one BatchGetItem, one conditional PutItem per interaction, BatchWriteItem for the store, and
    ceil(n/10) PublishBatch per consumer; no SQS request at all."""
    runtime = stage.runtime
    # (events, interactions); the last case continues the interactions of the one before.
    cases = [(1, 1), (4, 2), (10, 3), (10, 10), (23, 5), (10, 5)]
    print(
        "\nevents interactions | DynamoDB update get put write = total, per event, per"
        " interaction"
        " | SNS PublishBatch per consumer | SQS"
    )
    for run, (count, interactions) in enumerate(cases):
        series = run - 1 if run == len(cases) - 1 else run
        first = 100 if series != run else 0  # sequences after the earlier batch's
        bodies = [
            event(f"int-cost-{series}-{n % interactions}", first + n // interactions)
            for n in range(count)
        ]
        with counting_requests(runtime) as counts:
            assert stage.invoke_bodies(bodies) == {"batchItemFailures": []}

        dynamodb = requests_of(counts, "dynamodb")
        per_consumer = {
            consumer: counts[f"PublishBatch:{topic}"]
            for consumer, topic in runtime.consumer_topics.items()
        }
        print(
            f"{count:6} {interactions:12} | {counts['dynamodb.UpdateItem']:15} "
            f"{counts['dynamodb.BatchGetItem']:3} "
            f"{counts['dynamodb.PutItem']:3} {counts['dynamodb.BatchWriteItem']:5} = "
            f"{dynamodb:5} {dynamodb / count:9.2f} {dynamodb / interactions:15.2f} | "
            f"{sorted(set(per_consumer.values()))} | {requests_of(counts, 'sqs')}"
        )
        assert set(per_consumer.values()) == {math.ceil(count / 10)}
        assert counts[f"PublishBatch:{runtime.quarantine_topic}"] == 0
        # One read, after the marks, also for a continued interaction whose record still lists
        # the earlier batch's claims (a holder whose claims are all stored skips its release).
        assert counts["dynamodb.UpdateItem"] == interactions
        assert counts["dynamodb.BatchGetItem"] == 1
        assert counts["dynamodb.PutItem"] == interactions
        assert counts["dynamodb.BatchWriteItem"] >= 1
        assert requests_of(counts, "sqs") == 0
        for ids in stage.delivered_ids().values():
            assert sorted(ids) == sorted(b["id"] for b in bodies)


# --------------------------------------------------------------------------- the property


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    stream=properties.streams(max_interactions=2, max_events=4),
    chaos=properties.chaoses,
    seed=st.integers(0, 2**32),
)
def test_the_guarantees_hold_on_the_moto_server_too(
    provisioned: Runtime, stream: properties.Stream, chaos: properties.Chaos, seed: int
) -> None:
    """The property of tests/unit/test_pipeline_properties.py, a few examples with DynamoDB and
    SNS on the moto server (their own semantics: the claim condition, ALL_OLD, the batch
    limits) behind the same faults; the queue is the same model (the clock is the test's).
    Each example gets interactions of its own on the shared stage."""
    stream = properties.with_interaction_prefix(stream, f"{uuid.uuid4().hex[:8]}-")
    tally, clock = properties.InvocationTally(), FakeClock()
    visibility = provisioned.settings.lease_seconds + 5  # a dead holder's lease expires first
    with properties.patched(clock, tally):
        run = properties.drain(
            stream,
            chaos,
            Random(seed),
            lambda faults: FakeAws.around(provisioned, faults, clock, visibility),
        )
    properties.check_deliveries(stream, run)
    properties.check_quarantine(stream, run)
    properties.check_tally(stream, run, tally)

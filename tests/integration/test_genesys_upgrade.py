"""Upgrading a stage that stored Genesys events under the old dedup key and old order key.

Before the content key, the Genesys profile keyed an event on `metadata.CorrelationId|topicName`
and ordered it by the envelope `time` (one-second resolution). Genesys gives every notification
of a transcription session the same CorrelationId, so such a stage holds ONE transcription
notification per conversation (the others were dropped as duplicates) and its ledger's
high-water marks are envelope times. Its items are written here directly, in the layout the
store and the ledger used (chalicelib/store/layout.py; the ledger's interaction record: `pk`,
`v`, `lu`, `inf`, `ht`/`hti`), then re-sends of the stored events and new notifications of the
same conversations go through the real `ingest` handler (chalice.test.Client) against the moto
server. Promised: nothing lost, order kept, at most one repeat per re-sent old event.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

import boto3
from chalice.test import Client

from chalicelib.formats import canonical_json, rfc3339, sha256_hex, utc_now
from chalicelib.runtime import Runtime
from chalicelib.store import layout
from chalicelib.store.queries import timeline
from scripts.traffic.genesys import TRANSCRIPTION, genesys_source, transcription_detail
from scripts.traffic.simulate import envelope_time, random_uuid
from tests.support.helpers import drain_queue, sqs_lambda_event

ORGANIZATION = "11111111-2222-4333-8444-555555555555"
START = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
ACD_START = "v2.detail.events.conversation.{id}.acd.start"


def notification(detail_type: str, detail: dict[str, Any], moment: datetime) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": genesys_source(ORGANIZATION),
        "account": "123456789012",
        "time": envelope_time(moment),
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def acd_start(conversation: str, moment: datetime) -> dict[str, Any]:
    detail = {
        "topicName": ACD_START.replace("{id}", conversation),
        "version": "2",
        "eventBody": {
            "eventTime": int(moment.timestamp() * 1000),
            "conversationId": conversation,
            "participantId": str(uuid.uuid4()),
            "mediaType": "VOICE",
        },
        "metadata": {"CorrelationId": str(uuid.uuid4())},
        "timestamp": rfc3339(moment + timedelta(milliseconds=90)),
    }
    return notification(ACD_START, detail, moment)


def transcriptions(
    rng: Random, conversation: str, correlation: str, first: datetime, count: int
) -> list[dict[str, Any]]:
    events, moment = [], first
    for _ in range(count):
        moment += timedelta(milliseconds=rng.randrange(200, 1500))
        detail = transcription_detail(
            rng,
            organization_id=ORGANIZATION,
            conversation_id=conversation,
            communication_id=conversation[::-1],
            correlation_id=correlation,
            session_start=first,
            moment=moment,
        )
        events.append(notification(TRANSCRIPTION, detail, moment))
    return events


def body_of(event: dict[str, Any]) -> str:
    """A notification's identity by content: its eventBody, canonical."""
    return canonical_json(event["detail"]["eventBody"])


def old_dedup_key(event: dict[str, Any]) -> str:
    """The key before the content key: CorrelationId | topicName."""
    return f"{event['detail']['metadata']['CorrelationId']}|{event['detail']['topicName']}"


def old_occurred_at(event: dict[str, Any]) -> str:
    """The order key before: the envelope `time`, cut to the second."""
    return event["time"][:19] + ".000Z"


def old_message(event: dict[str, Any], state: str) -> dict[str, Any]:
    """The delivered message as the old relay stored it."""
    return {
        "event_id": event["id"],
        "interaction_id": event["detail"]["eventBody"]["conversationId"],
        "participant_id": event["detail"]["eventBody"].get("participantId"),
        "detail_type": event["detail-type"],
        "stage": "Queued" if state == "acd.start" else None,
        "state": state,
        "sequence": None,
        "occurred_at": old_occurred_at(event),
        "received_at": old_occurred_at(event),
        "late": False,
        "replay": False,
        "replay_job_id": None,
        "source": event["source"],
        "event": event,
    }


def seed_old_stage(runtime: Runtime, stored: dict[str, list[dict[str, Any]]]) -> None:
    """Events items, time-index items and interaction records as the old relay left them."""
    settings, dynamodb, now = runtime.settings, runtime.dynamodb, utc_now()
    names = settings.names
    writes: list[tuple[str, dict[str, Any]]] = []
    for conversation, events in stored.items():
        messages = []
        for event in events:
            state = "acd.start" if event["detail-type"] == ACD_START else "transcription"
            message = old_message(event, state)
            messages.append((message, old_dedup_key(event)))
            item = layout.event_item(
                message,
                dedup_key=old_dedup_key(event),
                payload_sha256=sha256_hex(canonical_json(event["detail"])),
                retention_days=settings.store_retention_days,
                now=now,
            )
            writes.append((names.events_table, item))
        writes += [
            (names.time_index_table, item)
            for item in layout.time_index_items(
                messages,
                shards=settings.time_index_shards,
                retention_days=settings.store_retention_days,
                now=now,
            )
        ]
        newest = max(events, key=lambda e: (old_occurred_at(e), e["id"]))
        record = {
            "pk": {"S": conversation},
            "v": {"N": "3"},
            "lu": {"N": "0"},
            "inf": {"M": {}},
            "expires_at": {"N": str(int((now + timedelta(days=30)).timestamp()))},
            "ht": {"S": old_occurred_at(newest)},
            "hti": {"S": newest["id"]},
        }
        writes.append((names.ledger_table, record))
    for table, item in writes:
        dynamodb.put_item(TableName=table, Item=item)


def subscribe(session: boto3.Session, topic_arn: str) -> str:
    sqs, sns = session.client("sqs"), session.client("sns")
    url = sqs.create_queue(QueueName=f"sub-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    return url


def ingest(runtime: Runtime, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The `ingest` handler on one SQS batch of these envelopes, as Lambda calls it."""
    import app as app_module

    queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{runtime.settings.names.ingest_queue}"
    with Client(app_module.app, stage_name="local") as client:
        return client.lambda_.invoke("ingest", sqs_lambda_event(events, queue_arn)).payload


def test_an_upgraded_stage_loses_nothing_keeps_order_and_repeats_an_old_event_at_most_once(
    provisioned: Runtime, boto_session: boto3.Session
) -> None:
    runtime, rng = provisioned, Random(17)
    consumers = {
        name: subscribe(boto_session, arn) for name, arn in runtime.consumer_topics.items()
    }
    quarantine = subscribe(boto_session, runtime.quarantine_topic)
    conversations = [random_uuid(rng) for _ in range(2)]
    old: dict[str, list[dict[str, Any]]] = {}
    stream: dict[str, list[dict[str, Any]]] = {}
    for number, conversation in enumerate(conversations):
        first = START + timedelta(seconds=10 * number)
        correlation = random_uuid(rng)
        stream[conversation] = transcriptions(rng, conversation, correlation, first, 12)
        # What the old key let through: acd.start, and the session's first notification.
        old[conversation] = [acd_start(conversation, first), stream[conversation][0]]
    seed_old_stage(runtime, old)

    old_events = [event for events in old.values() for event in events]
    # Genesys re-sends every old event (same body, new EventBridge id), one of them twice;
    # then the sessions go on (notifications 6-11); the ones the old key dropped (1-5) arrive
    # late, as a re-drive of a provider's backlog would bring them.
    resends = [{**event, "id": str(uuid.uuid4())} for event in [*old_events, old_events[1]]]
    later = [e for events in stream.values() for e in events[6:]]
    dropped_before = [e for events in stream.values() for e in events[1:6]]
    batches = [resends[:3], later[:6], resends[3:], later[6:], dropped_before]
    for batch in batches:
        for start in range(0, len(batch), 10):
            result = ingest(runtime, batch[start : start + 10])
            assert result == {"batchItemFailures": []}, result

    sqs = boto_session.client("sqs")
    old_marks = {c: max(old_occurred_at(e) for e in events) for c, events in old.items()}
    continuation = {body_of(e) for e in later}
    for consumer, url in consumers.items():
        messages = [json.loads(m["Body"]) for m in drain_queue(sqs, url)]
        copies = Counter(body_of(m["event"]) for m in messages)
        # At most one repeat per re-sent old event: each is delivered once (its old copy was
        # stored under the old key, so the new key does not find it), the second re-send not.
        assert all(copies[body_of(e)] == 1 for e in old_events), consumer
        # Nothing lost: every new notification exactly once, nothing else.
        assert all(copies[body_of(e)] == 1 for e in [*later, *dropped_before]), consumer
        assert len(messages) == len(old_events) + len(later) + len(dropped_before), consumer
        # Order kept: per conversation, from the old stage's high-water mark on, what is not
        # flagged late is not older than anything before it, and what is flagged late is not
        # newer (equal times are ordered by event id).
        newest = dict(old_marks)
        for message in messages:
            interaction, occurred = message["interaction_id"], message["occurred_at"]
            if message["late"]:
                assert occurred <= newest[interaction], (consumer, occurred)
            else:
                assert occurred >= newest[interaction], (consumer, occurred)
            newest[interaction] = max(occurred, newest[interaction])
        # The sessions' continuation is newer than anything the old stage held: never late.
        assert not any(m["late"] for m in messages if body_of(m["event"]) in continuation)
    assert drain_queue(sqs, quarantine) == []

    # The stored timeline keeps the old items beside the new ones, each conversation complete.
    names = runtime.settings.names
    for conversation in conversations:
        page = timeline(runtime.dynamodb, names.events_table, conversation, limit=1000)
        stored_ids = {m["event_id"] for m in page.events}
        assert {e["id"] for e in old[conversation]} <= stored_ids  # the old items are kept
        bodies = {body_of(m["event"]) for m in page.events}
        assert {body_of(e) for e in stream[conversation]} <= bodies
        occurred = [m["occurred_at"] for m in page.events]
        assert occurred == sorted(occurred), conversation

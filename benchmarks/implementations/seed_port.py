"""A faithful Python port of the seed tutorial's design, as an SQS-fed Lambda handler.

The seed (a Go walkthrough) handles one event at a time:

    dedup key = envelope id + "-" + interaction id; mark it seen   (before validation)
    validate (required fields, allowed stage, id length)
    fan out: one goroutine per consumer, each one call downstream; wait for all
    audit log line per consumer, one pipeline log line per event

Ported to AWS with the same shape: the in-memory "seen" map becomes one DynamoDB conditional
PutItem per event (the only way a map survives Lambda), and each goroutine's downstream call
becomes one SNS Publish to that consumer's topic, the three running concurrently as the
goroutines did. Events are processed sequentially; the tutorial's 10 ms sleep is left out.

What is kept equal across the benchmark, so that the comparison is about the delivery design
and not about validation or payloads: validation is the project's own (`validate_record`, so
all three implementations accept and reject the same events) and the published message is
the project's delivered message with its attributes. Logging is what a production build of it
would keep: one line per record (the seed's per-consumer AUDIT lines folded into its PIPELINE
line), through `logging`, as Lambda's Python runtime formats it. A duplicate is acknowledged
(the seed returned an error for it, which on SQS would loop until the DLQ), and so is an
invalid event (the seed logged it; its dedup mark was already written, so a retry could never
succeed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from chalicelib.config import Settings
from chalicelib.formats import rfc3339, utc_now
from chalicelib.model import InvalidEvent, delivered_message, message_attributes
from chalicelib.providers.validation import validate_record

logger = logging.getLogger("benchmarks.seed_port")

DEDUP_KEY_ATTRIBUTE = "pk"


@dataclass(frozen=True)
class SeedResources:
    dedup_table: str
    consumer_topics: dict[str, str]  # consumer -> topic ARN


def provision(session: boto3.Session, prefix: str, consumers: tuple[str, ...]) -> SeedResources:
    """The seed's resources on a fresh stage: its dedup table and one topic per consumer."""
    dynamodb = session.client("dynamodb")
    table = f"{prefix}-seed-dedup"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": DEDUP_KEY_ATTRIBUTE, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": DEDUP_KEY_ATTRIBUTE, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    sns = session.client("sns")
    topics = {c: sns.create_topic(Name=f"{prefix}-seed-{c}")["TopicArn"] for c in consumers}
    return SeedResources(dedup_table=table, consumer_topics=topics)


class DuplicateEvent(Exception):
    """The seed's "duplicate event ignored" error."""


class SeedPort:
    """The seed's per-event pipeline behind an SQS batch handler."""

    name = "seed_port"

    def __init__(
        self, session: boto3.Session, resources: SeedResources, settings: Settings
    ) -> None:
        self.dynamodb = session.client("dynamodb")
        self.sns = session.client("sns")
        self.resources = resources
        self.settings = settings
        # One worker per consumer: the seed's goroutines.
        self.fan_out_pool = ThreadPoolExecutor(max_workers=len(resources.consumer_topics))

    def tables(self) -> list[str]:
        return [self.resources.dedup_table]

    def consumer_topic_arns(self) -> list[str]:
        return list(self.resources.consumer_topics.values())

    def close(self) -> None:
        self.fan_out_pool.shutdown(wait=True)

    def handle(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event.get("Records", []):
            try:
                self.process_event(record["body"])
            except (ClientError, RuntimeError) as error:
                logger.info("processing error: %s", error)
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    def process_event(self, body: str) -> None:
        try:
            raw = json.loads(body)
            detail = raw.get("detail") or {}
            dedup_key = f"{raw.get('id', '')}-{detail.get('interaction.id', '')}"
        except (ValueError, AttributeError):
            logger.info("invalid json")
            return
        try:
            self.mark_seen(dedup_key)
        except DuplicateEvent:
            logger.info("duplicate event ignored: %s", dedup_key)
            return
        event = validate_record(body, self.settings)
        if isinstance(event, InvalidEvent):
            logger.info("validation failed: %s", sorted(event.errors))
            return
        message = delivered_message(event, received_at=rfc3339(utc_now()), late=False)
        body_text = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        attributes = message_attributes(message)
        futures = {
            consumer: self.fan_out_pool.submit(
                self.sns.publish, TopicArn=arn, Message=body_text, MessageAttributes=attributes
            )
            for consumer, arn in self.resources.consumer_topics.items()
        }
        errors = []
        for consumer, future in futures.items():
            try:
                future.result()
            except ClientError as error:
                errors.append(f"{consumer}: {error.response['Error']['Code']}")
        logger.info(
            "PIPELINE: event %s ingested: interaction %s stage %s, %d consumers",
            event.event_id,
            event.interaction_id,
            event.stage,
            len(futures) - len(errors),
        )
        if errors:
            raise RuntimeError(f"fan-out failed: {errors}")

    def mark_seen(self, dedup_key: str) -> None:
        try:
            self.dynamodb.put_item(
                TableName=self.resources.dedup_table,
                Item={DEDUP_KEY_ATTRIBUTE: {"S": dedup_key}},
                ConditionExpression=f"attribute_not_exists({DEDUP_KEY_ATTRIBUTE})",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise DuplicateEvent(dedup_key) from error
            raise

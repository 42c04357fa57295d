"""What a user would build from AWS Lambda Powertools (3.37) for the same job.

    BatchProcessor(EventType.SQS) + process_partial_response   partial batch failures
    idempotent_function on DynamoDBPersistenceLayer            dedup (its own table, key `id`)
    one SNS Publish per consumer per record                    fan-out

Per new event that is a conditional PutItem (INPROGRESS), three Publish calls and an UpdateItem
(COMPLETED, with the function's result); a duplicate is answered from the PutItem's
ReturnValuesOnConditionCheckFailure, with no further call. Powertools' defaults are kept
(no local cache, one-hour expiry), as its documentation shows them.

Kept equal across the benchmark: validation is the project's own `validate_record` (so all
three implementations accept and reject the same events; the issue allows marshmallow
validation "equally") and the published message is the project's delivered message. An
invalid event is logged and acknowledged, not retried (retrying cannot fix it). Logging is
what a production build would keep: one Powertools Logger line per record (processed or
invalid), with the ids, in Powertools' default JSON format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from chalicelib.config import Settings
from chalicelib.formats import rfc3339, utc_now
from chalicelib.model import InvalidEvent, delivered_message, message_attributes
from chalicelib.providers.validation import validate_record

LOGGER_SERVICE = "benchmarks-powertools-port"
logger = Logger(service=LOGGER_SERVICE)


@dataclass(frozen=True)
class PowertoolsResources:
    idempotency_table: str
    consumer_topics: dict[str, str]  # consumer -> topic ARN


def provision(
    session: boto3.Session, prefix: str, consumers: tuple[str, ...]
) -> PowertoolsResources:
    """The idempotency table Powertools documents (partition key `id`, TTL `expiration`) and
    one topic per consumer."""
    dynamodb = session.client("dynamodb")
    table = f"{prefix}-pt-idempotency"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"}
    )
    sns = session.client("sns")
    topics = {c: sns.create_topic(Name=f"{prefix}-pt-{c}")["TopicArn"] for c in consumers}
    return PowertoolsResources(idempotency_table=table, consumer_topics=topics)


class PowertoolsPort:
    """The handler a Powertools user would write, built around one boto3 session."""

    name = "powertools"

    def __init__(
        self, session: boto3.Session, resources: PowertoolsResources, settings: Settings
    ) -> None:
        self.resources = resources
        self.settings = settings
        self.sns = session.client("sns")
        self.processor = BatchProcessor(event_type=EventType.SQS)
        persistence = DynamoDBPersistenceLayer(
            table_name=resources.idempotency_table, boto3_session=session
        )
        self.config = IdempotencyConfig(
            event_key_jmespath="[interaction_id, dedup_key]", raise_on_no_idempotency_key=True
        )
        sns, topics = self.sns, resources.consumer_topics

        @idempotent_function(
            data_keyword_argument="event", persistence_store=persistence, config=self.config
        )
        def deliver(event: dict[str, Any]) -> dict[str, Any]:
            message = event["message"]
            body = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
            attributes = message_attributes(message)
            for arn in topics.values():
                sns.publish(TopicArn=arn, Message=body, MessageAttributes=attributes)
            return {"event_id": message["event_id"], "consumers": len(topics)}

        self.deliver = deliver

    def tables(self) -> list[str]:
        return [self.resources.idempotency_table]

    def consumer_topic_arns(self) -> list[str]:
        return list(self.resources.consumer_topics.values())

    def close(self) -> None:
        return None

    def record_handler(self, record: SQSRecord) -> None:
        event = validate_record(record.body, self.settings)
        if isinstance(event, InvalidEvent):
            logger.info(
                "invalid event",
                extra={"message_id": record.message_id, "fields": sorted(event.errors)},
            )
            return
        message = delivered_message(event, received_at=rfc3339(utc_now()), late=False)
        self.deliver(
            event={
                "interaction_id": event.interaction_id,
                "dedup_key": event.dedup_key,
                "message": message,
            }
        )
        logger.info(
            "processed",
            extra={"message_id": record.message_id, "event_id": event.event_id},
        )

    def handle(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        self.config.register_lambda_context(context)
        return dict(
            process_partial_response(
                event=dict(event),
                record_handler=self.record_handler,
                processor=self.processor,
                context=context,
            )
        )

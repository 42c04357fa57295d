"""The resource specification of one stage: pure data, no AWS calls.

`scripts.provision` creates these resources and `scripts.packaging.template` renders the same
specification into the CloudFormation merge template, so the two cannot drift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from chalicelib.config import (
    CONNECT_DETAIL_TYPE,
    CONNECT_SOURCE,
    CXONE_DETAIL_TYPES,
    GENESYS_SOURCE_PREFIX,
    Settings,
)
from chalicelib.timing import (
    MAX_RECEIVE_COUNT,
    RETENTION_SECONDS,
    VISIBILITY_FACTOR,
    ingest_timeout_seconds,
)


@dataclass(frozen=True)
class QueueSpec:
    name: str
    visibility_timeout: int
    dead_letter_queue: str | None = None  # name; None for a DLQ itself
    max_receive_count: int = MAX_RECEIVE_COUNT

    def attributes(self, dlq_arn: str | None) -> dict[str, str]:
        attributes = {
            "VisibilityTimeout": str(self.visibility_timeout),
            "MessageRetentionPeriod": str(RETENTION_SECONDS),
            "ReceiveMessageWaitTimeSeconds": "20",
            "SqsManagedSseEnabled": "true",
        }
        if dlq_arn is not None:
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": self.max_receive_count}
            )
        return attributes


@dataclass(frozen=True)
class TopicSpec:
    name: str

    @property
    def fifo(self) -> bool:
        return self.name.endswith(".fifo")

    def attributes(self) -> dict[str, str]:
        if self.fifo:
            # Dedup ids are set per message (event id, or job id + event id on replay).
            return {"FifoTopic": "true", "ContentBasedDeduplication": "false"}
        return {}


def key_schema(hash_key: str, range_key: str | None) -> list[dict[str, str]]:
    schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return schema


@dataclass(frozen=True)
class TableSpec:
    name: str
    hash_key: str
    range_key: str | None = None
    ttl_attribute: str = "expires_at"

    def key_schema(self) -> list[dict[str, str]]:
        return key_schema(self.hash_key, self.range_key)

    def attribute_names(self) -> list[str]:
        return [self.hash_key] + ([self.range_key] if self.range_key else [])


@dataclass(frozen=True)
class RuleSpec:
    name: str
    pattern: dict[str, Any]
    target_id: str
    target_queue: str
    target_dlq: str
    max_retry_attempts: int = 185  # EventBridge's maximum: keep retrying for 24 hours
    max_event_age_seconds: int = 86400
    event_bus: str | None = None  # None: the stage's own bus
    # The queue-policy statement admitting this rule; rules sharing a Sid share a statement.
    policy_sid: str = "AllowRelayRules"


@dataclass(frozen=True)
class StackSpec:
    stage: str
    queues: tuple[QueueSpec, ...]
    topics: tuple[TopicSpec, ...]
    tables: tuple[TableSpec, ...]
    event_bus: str
    rules: tuple[RuleSpec, ...]
    consumer_topics: dict[str, str] = field(default_factory=dict)  # consumer -> topic name


def cxone_pattern(settings: Settings) -> dict[str, Any]:
    return {"source": [settings.event_source], "detail-type": list(CXONE_DETAIL_TYPES)}


def genesys_pattern() -> dict[str, Any]:
    # Every topic is accepted (users pick topics in Genesys); the profile normalises them.
    return {"source": [{"prefix": GENESYS_SOURCE_PREFIX}]}


def connect_pattern() -> dict[str, Any]:
    return {"source": [CONNECT_SOURCE], "detail-type": [CONNECT_DETAIL_TYPE]}


def stack_spec(settings: Settings) -> StackSpec:
    names = settings.names
    visibility = VISIBILITY_FACTOR * ingest_timeout_seconds(settings.stage)
    consumer_topics = {c: settings.consumer_topic_name(c) for c in settings.consumers}
    rules = [
        RuleSpec(
            name=names.ingest_rule,
            pattern=cxone_pattern(settings),
            target_id="ingest-queue",
            target_queue=names.ingest_queue,
            target_dlq=names.ingest_dlq,
        )
    ]
    if settings.genesys_enabled:
        rules.append(
            RuleSpec(
                name=f"{names.ingest_rule}-genesys",
                pattern=genesys_pattern(),
                target_id="ingest-queue",
                target_queue=names.ingest_queue,
                target_dlq=names.ingest_dlq,
            )
        )
    if settings.connect_enabled:
        # AWS service events reach the default bus only (or one the user forwards them to).
        rules.append(
            RuleSpec(
                name=f"{names.ingest_rule}-connect",
                pattern=connect_pattern(),
                target_id="ingest-queue",
                target_queue=names.ingest_queue,
                target_dlq=names.ingest_dlq,
                event_bus=settings.connect_event_bus,
                policy_sid="AllowAmazonConnectRule",
            )
        )
    return StackSpec(
        stage=settings.stage,
        queues=(
            QueueSpec(names.ingest_dlq, visibility_timeout=visibility),
            QueueSpec(names.ingest_queue, visibility, dead_letter_queue=names.ingest_dlq),
            QueueSpec(names.replay_dlq, visibility_timeout=visibility),
            QueueSpec(names.replay_queue, visibility, dead_letter_queue=names.replay_dlq),
        ),
        topics=(
            *(TopicSpec(name) for name in consumer_topics.values()),
            TopicSpec(names.quarantine_topic),
        ),
        tables=(
            # Per-interaction lease, high-water mark and in-flight claims (see ledger.py).
            TableSpec(names.ledger_table, hash_key="pk"),
            # Delivered events: the timeline (pk = interaction); the item is the dedup record.
            TableSpec(names.events_table, hash_key="pk", range_key="sk"),
            # Chronological windows: per settled batch, one item per second of its events,
            # spread over shards of each day (see store.py) instead of a GSI entry per event.
            TableSpec(names.time_index_table, hash_key="pk", range_key="sk"),
            TableSpec(names.jobs_table, hash_key="pk", range_key="sk"),
        ),
        event_bus=names.event_bus,
        rules=tuple(rules),
        consumer_topics=consumer_topics,
    )

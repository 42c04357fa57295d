"""The model of one stage's stack: every resource, property and policy, as plain data.

Nothing here calls AWS. Two renderers read the same `StackSpec`, the way Chalice's planner
renders one model both as API calls and as a SAM template: `scripts.provisioning` plans and
runs boto3 calls from it (`python -m scripts.provision`, `--dry-run` prints the plan), and
`scripts.packaging.template` writes it as the SAM merge template and the functions' IAM
policies (`make package`). What one renderer creates the other creates too, with the same
security properties (encryption, point-in-time recovery, retention, redrive, policies).

Durations come from chalicelib.timing, the one table of function settings: a queue's
visibility is derived from the timeout of the function that reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from chalicelib.config import (
    CONNECT_DETAIL_TYPE,
    CONNECT_SOURCE,
    CXONE_DETAIL_TYPES,
    GENESYS_SOURCE_PREFIX,
    Settings,
)
from chalicelib.timing import (
    EVENT_SOURCES,
    FUNCTION_MEMORY_MB,
    FUNCTIONS,
    MAX_RECEIVE_COUNT,
    RETENTION_SECONDS,
    BatchSettings,
    FunctionName,
    function_timeout_seconds,
    log_retention_days,
    queue_visibility_seconds,
    reserved_concurrency,
)

# The AWS managed key of SNS: what a topic is encrypted with unless a customer key is chosen.
SNS_MANAGED_KEY = "alias/aws/sns"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    visibility_timeout: int
    dead_letter_queue: str | None = None  # name; None for a DLQ itself
    max_receive_count: int = MAX_RECEIVE_COUNT
    reader: FunctionName | None = None  # the function whose event source this queue is

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
        attributes = {"KmsMasterKeyId": SNS_MANAGED_KEY}
        if self.fifo:
            # Dedup ids are set per message (event id, or job id + event id on replay).
            attributes.update({"FifoTopic": "true", "ContentBasedDeduplication": "false"})
        return attributes


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
    point_in_time_recovery: bool = True
    # Server-side encryption with KMS (the AWS managed key aws/dynamodb unless a customer key
    # is chosen), not DynamoDB's default AWS owned key.
    kms_encryption: bool = True

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
    # The bus the rule lives on; None is the stage's own bus. AWS service events (Amazon
    # Connect) reach only the account's default bus: their rule names it.
    event_bus: str | None = None
    # The queue-policy statement admitting this rule; rules sharing a Sid share a statement.
    policy_sid: str = "AllowRelayRules"


@dataclass(frozen=True)
class LogGroupSpec:
    name: str
    retention_days: int


@dataclass(frozen=True)
class SecretSpec:
    """A secret the stack creates with a random value (never derived from names)."""

    name: str
    description: str
    length: int = 64  # characters of [A-Za-z0-9]: 380 bits


@dataclass(frozen=True)
class Grant:
    """Actions on named resources of one kind; renderers turn names into ARNs."""

    sid: str
    kind: Literal["queue", "topic", "table", "bus", "secret", "log-group"]
    actions: tuple[str, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class FunctionSpec:
    name: FunctionName
    physical_name: str  # as `chalice deploy` names it; packaging sets the same FunctionName
    timeout: int
    memory: int
    reserved_concurrency: int | None
    grants: tuple[Grant, ...]
    log_group: LogGroupSpec
    event_source: str | None = None  # the queue it reads
    batch: BatchSettings | None = None


@dataclass(frozen=True)
class ApiSpec:
    """The REST API's stage settings Chalice does not set: access logs and throttling."""

    access_log_group: LogGroupSpec
    throttling_rate_limit: float
    throttling_burst_limit: int


@dataclass(frozen=True)
class StackSpec:
    stage: str
    queues: tuple[QueueSpec, ...]
    topics: tuple[TopicSpec, ...]
    tables: tuple[TableSpec, ...]
    event_bus: str
    rules: tuple[RuleSpec, ...]
    consumer_topics: dict[str, str] = field(default_factory=dict)  # consumer -> topic name
    secrets: tuple[SecretSpec, ...] = ()
    functions: tuple[FunctionSpec, ...] = ()
    api: ApiSpec | None = None
    tracing: bool = False

    def function(self, name: FunctionName) -> FunctionSpec:
        return next(f for f in self.functions if f.name == name)

    def rule_bus(self, rule: RuleSpec) -> str:
        return rule.event_bus or self.event_bus

    @property
    def log_groups(self) -> tuple[LogGroupSpec, ...]:
        groups = [f.log_group for f in self.functions]
        if self.api is not None:
            groups.append(self.api.access_log_group)
        return tuple(groups)


def cxone_pattern(settings: Settings) -> dict[str, Any]:
    return {"source": [settings.event_source], "detail-type": list(CXONE_DETAIL_TYPES)}


def genesys_pattern() -> dict[str, Any]:
    # Every topic is accepted (users pick topics in Genesys); the profile normalises them.
    return {"source": [{"prefix": GENESYS_SOURCE_PREFIX}]}


def connect_pattern() -> dict[str, Any]:
    return {"source": [CONNECT_SOURCE], "detail-type": [CONNECT_DETAIL_TYPE]}


def function_physical_name(settings: Settings, function: FunctionName) -> str:
    # Chalice names the function behind the REST API after the app and stage alone.
    return settings.prefix if function == "api_handler" else f"{settings.prefix}-{function}"


# Data-plane actions, by what a function does with a resource. Every one is granted on named
# resources only; no Scan anywhere (every read uses a key).
CONSUME_QUEUE = (
    "sqs:ChangeMessageVisibility",  # a record's backoff before it is reported failed
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
)
SEND_TO_QUEUE = ("sqs:GetQueueUrl", "sqs:SendMessage")
PUBLISH = ("sns:Publish",)  # covers PublishBatch
READ_SECRET = ("secretsmanager:GetSecretValue",)
# X-Ray's write actions take no resource: granted as AWS's AWSXRayDaemonWriteAccess does.
XRAY_WRITE_ACTIONS = (
    "xray:PutTelemetryRecords",
    "xray:PutTraceSegments",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
)
WRITE_LOGS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents")


def _grants(settings: Settings) -> dict[FunctionName, list[Grant]]:
    """What each function does, and nothing more."""
    names = settings.names
    consumer_topics = tuple(settings.consumer_topic_name(c) for c in settings.consumers)
    return {
        "ingest": [
            Grant("ConsumeIngestQueue", "queue", CONSUME_QUEUE, (names.ingest_queue,)),
            Grant(
                "PublishToConsumersAndQuarantine",
                "topic",
                PUBLISH,
                (*consumer_topics, names.quarantine_topic),
            ),
            # Arrival marks (updates), then claims, leases and high-water marks (conditional
            # puts); records read again while a batch waits for its turn. Nothing else reads or
            # writes the ledger table.
            Grant(
                "ClaimInLedger",
                "table",
                ("dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
                (names.ledger_table,),
            ),
            Grant(
                "StoreEvents",
                "table",
                ("dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"),
                (names.events_table,),
            ),
            Grant("IndexEvents", "table", ("dynamodb:BatchWriteItem",), (names.time_index_table,)),
        ],
        "replay_worker": [
            Grant("ConsumeReplayQueue", "queue", CONSUME_QUEUE, (names.replay_queue,)),
            # A job that runs out of time queues its own continuation.
            Grant("ContinueJobs", "queue", SEND_TO_QUEUE, (names.replay_queue,)),
            Grant("PublishToConsumers", "topic", PUBLISH, consumer_topics),
            Grant(
                "ReadStoredEvents",
                "table",
                ("dynamodb:BatchGetItem", "dynamodb:Query"),
                (names.events_table, names.time_index_table),
            ),
            Grant(
                "TrackJobs",
                "table",
                ("dynamodb:GetItem", "dynamodb:UpdateItem"),
                (names.jobs_table,),
            ),
        ],
        "refresh_token": [
            Grant("ReadCXoneCredentials", "secret", READ_SECRET, (names.credentials_secret,)),
            # The token secret is created by the first refresh, then replaced on each one.
            Grant(
                "StoreToken",
                "secret",
                (
                    "secretsmanager:CreateSecret",
                    "secretsmanager:GetSecretValue",
                    "secretsmanager:PutSecretValue",
                ),
                (names.token_secret,),
            ),
        ],
        "api_handler": [
            Grant(
                "ReadStoredEvents",
                "table",
                ("dynamodb:BatchGetItem", "dynamodb:Query"),
                (names.events_table, names.time_index_table),
            ),
            Grant(
                "StartAndReadJobs",
                "table",
                ("dynamodb:GetItem", "dynamodb:PutItem"),
                (names.jobs_table,),
            ),
            Grant("QueueJobs", "queue", SEND_TO_QUEUE, (names.replay_queue,)),
            # POST /events: a signature is refused the second time (a conditional put).
            Grant("RememberPushSignatures", "table", ("dynamodb:PutItem",), (names.ledger_table,)),
            Grant("PutPushedEventsOnBus", "bus", ("events:PutEvents",), (names.event_bus,)),
            Grant(
                "ReadPushAndCursorKeys",
                "secret",
                READ_SECRET,
                (names.push_secret, names.cursor_key_secret),
            ),
        ],
    }


def stack_spec(settings: Settings) -> StackSpec:
    names = settings.names
    stage = settings.stage
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
    ingest_visibility = queue_visibility_seconds("ingest", stage)
    replay_visibility = queue_visibility_seconds("replay_worker", stage)
    queues = (
        QueueSpec(names.ingest_dlq, visibility_timeout=ingest_visibility),
        QueueSpec(
            names.ingest_queue,
            ingest_visibility,
            dead_letter_queue=names.ingest_dlq,
            reader="ingest",
        ),
        QueueSpec(names.replay_dlq, visibility_timeout=replay_visibility),
        QueueSpec(
            names.replay_queue,
            replay_visibility,
            dead_letter_queue=names.replay_dlq,
            reader="replay_worker",
        ),
    )
    topics = (
        *(TopicSpec(name) for name in consumer_topics.values()),
        TopicSpec(names.quarantine_topic),
    )
    grants = _grants(settings)
    retention = log_retention_days(stage)
    sources = {q.reader: q.name for q in queues if q.reader}
    functions = []
    for function in FUNCTIONS:
        physical = function_physical_name(settings, function)
        log_group = LogGroupSpec(f"/aws/lambda/{physical}", retention)
        functions.append(
            FunctionSpec(
                name=function,
                physical_name=physical,
                timeout=function_timeout_seconds(function, stage),
                memory=FUNCTION_MEMORY_MB[function],
                reserved_concurrency=reserved_concurrency(function, stage),
                grants=(
                    *grants[function],
                    Grant("WriteOwnLogs", "log-group", WRITE_LOGS, (log_group.name,)),
                ),
                log_group=log_group,
                event_source=sources.get(function),
                batch=EVENT_SOURCES.get(function),
            )
        )
    return StackSpec(
        stage=stage,
        queues=queues,
        topics=topics,
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
        secrets=(
            SecretSpec(
                names.push_secret,
                "HMAC key of POST /events (rotate: python -m scripts.provision rotate-push-secret)",
            ),
            SecretSpec(names.cursor_key_secret, "Signing key of the REST API's page cursors"),
        ),
        functions=tuple(functions),
        api=ApiSpec(
            access_log_group=LogGroupSpec(f"/aws/apigateway/{settings.prefix}-access", retention),
            throttling_rate_limit=50.0,
            throttling_burst_limit=100,
        ),
        # X-Ray everywhere but on the local stack (moto has no X-Ray daemon).
        tracing=stage != "local",
    )

"""Render a stage's CloudFormation merge template and IAM policy from its resource specification.

`make package` runs `python -m scripts.package --stage STAGE --out dist/merge-template.json`
and then `chalice package --merge-template dist/merge-template.json dist/`. The template is
built from `stack_spec(settings)`, the very specification `scripts.provision` creates, with the
settings of the stage's `.chalice/config.json`, so the packaged stack and a provisioned one
cannot drift. It adds what Chalice cannot: the queues, topics, tables, bus, rules and targets;
ReportBatchItemFailures on the ingest mapping (aws/chalice#2029); KMS encryption at rest;
alarms and a dashboard.

The stage's IAM policy (`.chalice/policy-<stage>.json`, used by `chalice deploy` and
`chalice package` alike) is generated from the same specification: `--write-policy` writes it,
and packaging refuses to go on while the committed file differs from it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chalice.utils import to_cfn_resource_name

from chalicelib.config import Settings, load_settings
from chalicelib.stack import (
    XRAY_WRITE_ACTIONS,
    FunctionSpec,
    Grant,
    QueueSpec,
    RuleSpec,
    SecretSpec,
    StackSpec,
    TableSpec,
    TopicSpec,
    stack_spec,
)
from chalicelib.telemetry import NAMESPACE as METRICS_NAMESPACE
from chalicelib.telemetry import SERVICE as METRICS_SERVICE
from scripts.provisioning.mapping import INGEST_FUNCTION, REPORT_BATCH_ITEM_FAILURES
from scripts.provisioning.partner import partner_rule

CUSTOMER_KEY_CONDITION = "UseCustomerKey"
ALARM_TOPIC_CONDITION = "HasAlarmTopic"
PARTNER_CONDITION = "HasPartnerSource"
KEY_ID = "RelayKmsKey"
EVENT_BUS_ID = "EventBus"
PARTNER_BUS_ID = "PartnerEventBus"
PARTNER_RULE_ID = "PartnerIngestRule"
DASHBOARD_ID = "RelayDashboard"


class PackageError(RuntimeError):
    """The stage cannot be packaged as it is; the message says what to fix."""


# --------------------------------------------------------------------------- settings


def stage_environment(project_dir: Path, stage: str) -> dict[str, str]:
    """The environment variables `.chalice/config.json` gives the stage's functions."""
    config = json.loads((project_dir / ".chalice" / "config.json").read_text())
    stages = config.get("stages", {})
    if stage not in stages:
        raise PackageError(
            f"stage {stage!r} is not in .chalice/config.json (stages: {', '.join(stages)})"
        )
    return {
        **config.get("environment_variables", {}),
        **stages[stage].get("environment_variables", {}),
    }


def stage_load_env(project_dir: Path, stage: str, region: str | None = None) -> dict[str, str]:
    """The environment the deployed stage's functions see (their region: the packaging one)."""
    env = {"RELAY_STAGE": stage, **stage_environment(project_dir, stage)}
    # The template uses AWS::Region; the region only has to satisfy load_settings.
    env["AWS_REGION"] = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    env["AWS_DEFAULT_REGION"] = env["AWS_REGION"]
    return env


def stage_settings(project_dir: Path, stage: str, region: str | None = None) -> Settings:
    """The settings the deployed stage's functions will load, so names match theirs."""
    return load_settings(stage_load_env(project_dir, stage, region))


# --------------------------------------------------------------------------- names, helpers


def logical_id(name: str, prefix: str, kind: str) -> str:
    """CloudFormation id of a named resource: cxone-relay-dev-ingest-dlq -> IngestDlqQueue."""
    short = name.removeprefix(f"{prefix}-")
    fifo = short.endswith(".fifo")
    camel = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", short))
    camel = camel.removesuffix("Fifo") + ("Fifo" if fifo else "")
    return camel if camel.endswith(kind) else camel + kind


def get_att(resource: str, attribute: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [resource, attribute]}


def ref(resource: str) -> dict[str, str]:
    return {"Ref": resource}


def if_customer_key(then: Any, otherwise: Any) -> dict[str, Any]:
    return {"Fn::If": [CUSTOMER_KEY_CONDITION, then, otherwise]}


NO_VALUE = ref("AWS::NoValue")
# With UseCustomerManagedKey=true, log groups and generated secrets are encrypted with the
# stage's key as queues, topics and tables are; otherwise with AWS's own keys.
CUSTOMER_KEY_ARN = {"Fn::If": [CUSTOMER_KEY_CONDITION, get_att(KEY_ID, "Arn"), NO_VALUE]}


class Ids:
    """Logical ids of the spec's resources, checked for collisions."""

    def __init__(self, settings: Settings, spec: StackSpec) -> None:
        prefix = settings.prefix
        self.queues = {q.name: logical_id(q.name, prefix, "Queue") for q in spec.queues}
        self.topics = {t.name: logical_id(t.name, prefix, "Topic") for t in spec.topics}
        self.tables = {t.name: logical_id(t.name, prefix, "Table") for t in spec.tables}
        self.rules = {r.name: logical_id(r.name, prefix, "Rule") for r in spec.rules}
        every = [
            *self.queues.values(),
            *self.topics.values(),
            *self.tables.values(),
            *self.rules.values(),
        ]
        duplicates = sorted({i for i in every if every.count(i) > 1})
        if duplicates:
            raise PackageError(f"resource names map to the same logical id: {duplicates}")


# --------------------------------------------------------------------------- resources


def queue_resource(queue: QueueSpec, ids: Ids) -> dict[str, Any]:
    properties: dict[str, Any] = {"QueueName": queue.name}
    # Render every attribute provision sets; an attribute added to QueueSpec without a
    # rendering here stops packaging instead of silently drifting.
    for key, value in queue.attributes(None).items():
        if key in ("VisibilityTimeout", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds"):
            properties[key] = int(value)
        elif key == "SqsManagedSseEnabled":
            # SQS-managed SSE, unless a customer-managed key is chosen. Not alias/aws/sqs:
            # EventBridge cannot send to a queue encrypted with an AWS managed key.
            properties["SqsManagedSseEnabled"] = if_customer_key(NO_VALUE, value == "true")
            properties["KmsMasterKeyId"] = if_customer_key(ref(KEY_ID), NO_VALUE)
        else:
            raise PackageError(f"queue attribute {key} has no CloudFormation rendering")
    if queue.dead_letter_queue:
        properties["RedrivePolicy"] = {
            "deadLetterTargetArn": get_att(ids.queues[queue.dead_letter_queue], "Arn"),
            "maxReceiveCount": queue.max_receive_count,
        }
    return {"Type": "AWS::SQS::Queue", "Properties": properties}


def topic_resource(topic: TopicSpec) -> dict[str, Any]:
    properties: dict[str, Any] = {"TopicName": topic.name}
    for key, value in topic.attributes().items():
        if key == "KmsMasterKeyId":
            properties[key] = if_customer_key(ref(KEY_ID), value)
        elif key in ("FifoTopic", "ContentBasedDeduplication"):
            properties[key] = value == "true"
        else:
            raise PackageError(f"topic attribute {key} has no CloudFormation rendering")
    return {"Type": "AWS::SNS::Topic", "Properties": properties}


def table_resource(table: TableSpec, stage: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "TableName": table.name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"} for name in table.attribute_names()
        ],
        "KeySchema": table.key_schema(),
        "TimeToLiveSpecification": {"AttributeName": table.ttl_attribute, "Enabled": True},
        "PointInTimeRecoverySpecification": {
            "PointInTimeRecoveryEnabled": table.point_in_time_recovery
        },
        "SSESpecification": {
            "SSEEnabled": table.kms_encryption,
            "SSEType": "KMS",  # without a key id: the AWS managed key aws/dynamodb
            "KMSMasterKeyId": if_customer_key(ref(KEY_ID), NO_VALUE),
        },
    }
    # Production keeps its data when the stack goes; other stages clean up after themselves.
    policy = "Retain" if stage == "prod" else "Delete"
    return {
        "Type": "AWS::DynamoDB::Table",
        "DeletionPolicy": policy,
        "UpdateReplacePolicy": policy,
        "Properties": properties,
    }


def target(rule: RuleSpec, ids: Ids) -> dict[str, Any]:
    return {
        "Id": rule.target_id,
        "Arn": get_att(ids.queues[rule.target_queue], "Arn"),
        "RetryPolicy": {
            "MaximumRetryAttempts": rule.max_retry_attempts,
            "MaximumEventAgeInSeconds": rule.max_event_age_seconds,
        },
        "DeadLetterConfig": {"Arn": get_att(ids.queues[rule.target_dlq], "Arn")},
    }


def rule_resource(rule: RuleSpec, bus: str | dict[str, Any], ids: Ids) -> dict[str, Any]:
    return {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "Name": rule.name,
            "EventBusName": bus,
            "EventPattern": rule.pattern,
            "State": "ENABLED",
            "Description": "CXone Event Relay: provider events to the ingest queue",
            "Targets": [target(rule, ids)],
        },
    }


def queue_policies(spec: StackSpec, ids: Ids, partner: RuleSpec) -> dict[str, Any]:
    """Per target queue: only EventBridge, on behalf of these rules, may send to it or its DLQ.

    The DLQ needs the grant too: EventBridge itself sends what it cannot deliver there.
    """
    resources: dict[str, Any] = {}
    # (queue, dlq) -> statement Sid -> the rules it admits (RuleSpec.policy_sid)
    by_queue: dict[tuple[str, str], dict[str, list[Any]]] = {}
    for rule in spec.rules:
        by_sid = by_queue.setdefault((rule.target_queue, rule.target_dlq), {})
        by_sid.setdefault(rule.policy_sid, []).append(get_att(ids.rules[rule.name], "Arn"))
    partner_key = (partner.target_queue, partner.target_dlq)
    partner_arns = by_queue.setdefault(partner_key, {}).setdefault(partner.policy_sid, [])
    partner_arns.append({"Fn::If": [PARTNER_CONDITION, get_att(PARTNER_RULE_ID, "Arn"), NO_VALUE]})
    for (queue, dlq), arns_by_sid in by_queue.items():
        queue_ids = [ids.queues[queue], ids.queues[dlq]]
        resources[f"{ids.queues[queue]}Policy"] = {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [ref(i) for i in queue_ids],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": sid,
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": [get_att(i, "Arn") for i in queue_ids],
                            "Condition": {"ArnEquals": {"aws:SourceArn": source_arns}},
                        }
                        for sid, source_arns in arns_by_sid.items()
                    ],
                },
            },
        }
    return resources


def kms_resources(settings: Settings) -> dict[str, Any]:
    """The optional customer-managed key, usable through the stage's services only."""
    services = [
        {"Fn::Sub": f"{service}.${{AWS::Region}}.amazonaws.com"}
        for service in ("dynamodb", "sns", "sqs", "secretsmanager")
    ]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministers",
                "Effect": "Allow",
                "Principal": {
                    "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
                },
                "Action": "kms:*",
                "Resource": "*",  # in a key policy, "*" is this key
            },
            {
                # As AWS managed keys do: any principal of this account that may use the queue,
                # topic or table may use the key, through that service only. The functions'
                # policy files therefore need no KMS statement.
                "Sid": "UseThroughRelayServices",
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": [
                    "kms:CreateGrant",
                    "kms:Decrypt",
                    "kms:DescribeKey",
                    "kms:Encrypt",
                    "kms:GenerateDataKey*",
                    "kms:ReEncrypt*",
                ],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "kms:CallerAccount": ref("AWS::AccountId"),
                        "kms:ViaService": services,
                    }
                },
            },
            {
                # CloudWatch Logs encrypts the stage's log groups, and only those.
                "Sid": "LogsEncryptsTheStagesLogGroups",
                "Effect": "Allow",
                "Principal": {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}},
                "Action": [
                    "kms:Decrypt",
                    "kms:Describe*",
                    "kms:Encrypt",
                    "kms:GenerateDataKey*",
                    "kms:ReEncrypt*",
                ],
                "Resource": "*",
                "Condition": {
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": [
                            {
                                "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:"
                                f"${{AWS::AccountId}}:log-group:{group}"
                            }
                            for group in (
                                f"/aws/lambda/{settings.prefix}",
                                f"/aws/lambda/{settings.prefix}-*",
                                f"/aws/apigateway/{settings.prefix}-*",
                            )
                        ]
                    }
                },
            },
            {
                # EventBridge encrypts what it sends to the ingest queue and its DLQ.
                "Sid": "EventBridgeSendsToEncryptedQueues",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": ref("AWS::AccountId")}},
            },
        ],
    }
    return {
        KEY_ID: {
            "Type": "AWS::KMS::Key",
            "Condition": CUSTOMER_KEY_CONDITION,
            # Losing the key loses the data encrypted with it: never delete it with the stack.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "Description": (
                    f"CXone Event Relay {settings.stage}: queues, topics, tables, log groups "
                    "and secrets"
                ),
                "EnableKeyRotation": True,
                "KeyPolicy": policy,
            },
        },
        f"{KEY_ID}Alias": {
            "Type": "AWS::KMS::Alias",
            "Condition": CUSTOMER_KEY_CONDITION,
            "Properties": {"AliasName": f"alias/{settings.prefix}", "TargetKeyId": ref(KEY_ID)},
        },
    }


def partner_resources(partner: RuleSpec, ids: Ids) -> dict[str, Any]:
    """The partner bus of the same name as the source, routed to the ingest queue (optional)."""
    source = ref("PartnerEventSourceName")
    rule = rule_resource(partner, source, ids)
    rule["Condition"] = PARTNER_CONDITION
    rule["Properties"]["EventPattern"] = {"source": [source]}
    rule["DependsOn"] = [PARTNER_BUS_ID]
    return {
        PARTNER_BUS_ID: {
            "Type": "AWS::Events::EventBus",
            "Condition": PARTNER_CONDITION,
            "Properties": {"Name": source, "EventSourceName": source},
        },
        PARTNER_RULE_ID: rule,
    }


# Run inside a fresh interpreter with the stage's environment variables: app.py reads its queue
# names from the environment at import time, and Chalice imports it with that environment too.
_LIST_SQS_HANDLERS = """
import json, sys
sys.path.insert(0, ".")
from chalice.app import SQSEventConfig
from app import app
print(json.dumps({s.name: s.queue or (s.queue_arn or "").rsplit(":", 1)[-1]
                  for s in app.event_sources if isinstance(s, SQSEventConfig)}))
"""


def app_sqs_handlers(project_dir: Path, stage_env: Mapping[str, str]) -> dict[str, str]:
    """Handler name -> queue name of every `on_sqs_message` in the project's app.py."""
    env = {**os.environ, **stage_env}
    result = subprocess.run(
        [sys.executable, "-c", _LIST_SQS_HANDLERS],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise PackageError(f"cannot import app.py to list its SQS handlers:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def function_resource_id(function: FunctionSpec) -> str:
    """Chalice's logical id of a function (the one behind the REST API is APIHandler)."""
    return "APIHandler" if function.name == "api_handler" else to_cfn_resource_name(function.name)


def function_patches(
    settings: Settings, spec: StackSpec, ids: Ids, sqs_handlers: Mapping[str, str]
) -> dict[str, Any]:
    """What Chalice's function resources lack.

    Chalice references each queue by an ARN built from its name (Fn::Sub), which tells
    CloudFormation nothing: DependsOn makes the queue exist before the function and so before
    its event source mapping, and the queue resources carry that same name as QueueName.
    Every function gets the name `chalice deploy` gives it, so its log group (Chalice's,
    named after the function) and its policy's log grant are the model's on both paths.
    """
    ingest_queue = sqs_handlers.get(INGEST_FUNCTION)
    if ingest_queue != settings.names.ingest_queue:
        raise PackageError(
            f"app.py's {INGEST_FUNCTION!r} handler listens to {ingest_queue!r}, but the stage's "
            f"ingest queue is {settings.names.ingest_queue!r}: package with the stage's "
            f"environment (RELAY_STAGE={settings.stage})"
        )
    patches: dict[str, Any] = {}
    for function in spec.functions:
        patches[function_resource_id(function)] = {
            "Properties": {"FunctionName": function.physical_name}
        }
        # Chalice's log group (from log_retention_in_days) names the function by a Sub of
        # its pre-rename logical id, which for the API handler does not exist: name it.
        patches[f"{to_cfn_resource_name(function.name)}LogGroup"] = {
            "Properties": {
                "LogGroupName": function.log_group.name,
                "RetentionInDays": function.log_group.retention_days,
                "KmsKeyId": CUSTOMER_KEY_ARN,
            }
        }
    for handler, queue in sqs_handlers.items():
        if queue not in ids.queues:
            raise PackageError(
                f"app.py's {handler!r} handler listens to {queue!r}, a queue the stage's "
                "resource specification does not create"
            )
        patches.setdefault(to_cfn_resource_name(handler), {"Properties": {}})
        patches[to_cfn_resource_name(handler)]["DependsOn"] = [ids.queues[queue]]
    ingest_event = to_cfn_resource_name(f"{INGEST_FUNCTION}-sqs-event-source")
    patches[to_cfn_resource_name(INGEST_FUNCTION)]["Properties"]["Events"] = {
        ingest_event: {"Properties": {"FunctionResponseTypes": [REPORT_BATCH_ITEM_FAILURES]}}
    }
    return patches


API_ACCESS_LOG_ID = "ApiAccessLogGroup"
# One JSON line per request: who, what, the answer, and the request id to find its logs.
API_ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "caller": "$context.identity.caller",
        "user": "$context.identity.user",
        "requestTime": "$context.requestTime",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "status": "$context.status",
        "protocol": "$context.protocol",
        "responseLength": "$context.responseLength",
    },
    separators=(",", ":"),
)


def api_patches(spec: StackSpec) -> dict[str, Any]:
    """Access logs with retention, stage throttling and tracing on Chalice's REST API."""
    if spec.api is None:
        return {}
    return {
        API_ACCESS_LOG_ID: {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": spec.api.access_log_group.name,
                "RetentionInDays": spec.api.access_log_group.retention_days,
                "KmsKeyId": CUSTOMER_KEY_ARN,
            },
        },
        "RestAPI": {
            "Properties": {
                "TracingEnabled": spec.tracing,
                "AccessLogSetting": {
                    "DestinationArn": get_att(API_ACCESS_LOG_ID, "Arn"),
                    "Format": API_ACCESS_LOG_FORMAT,
                },
                "MethodSettings": [
                    {
                        "ResourcePath": "/*",
                        "HttpMethod": "*",
                        "ThrottlingRateLimit": spec.api.throttling_rate_limit,
                        "ThrottlingBurstLimit": spec.api.throttling_burst_limit,
                    }
                ],
            }
        },
    }


def secret_logical_id(secret: SecretSpec, prefix: str) -> str:
    return logical_id(secret.name, prefix, "Secret")


def secret_resources(settings: Settings, spec: StackSpec) -> dict[str, Any]:
    """The generated secrets: random values Secrets Manager makes, never seen by anyone."""
    return {
        secret_logical_id(secret, settings.prefix): {
            "Type": "AWS::SecretsManager::Secret",
            "Properties": {
                "Name": secret.name,
                "Description": secret.description,
                "KmsKeyId": CUSTOMER_KEY_ARN,
                "GenerateSecretString": {
                    "PasswordLength": secret.length,
                    "ExcludePunctuation": True,
                },
            },
        }
        for secret in spec.secrets
    }


def _alarm(
    name: str,
    description: str,
    metric: dict[str, Any],
    threshold: Any,
    period: int,
    evaluation_periods: int = 1,
) -> dict[str, Any]:
    actions = {"Fn::If": [ALARM_TOPIC_CONDITION, [ref("AlarmTopicArn")], NO_VALUE]}
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": name,
            "AlarmDescription": description,
            **metric,
            "Period": period,
            "EvaluationPeriods": evaluation_periods,
            "DatapointsToAlarm": evaluation_periods,
            "Threshold": threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": actions,
            "OKActions": actions,
        },
    }


def dead_letter_queues(spec: StackSpec) -> list[str]:
    named = [q.dead_letter_queue for q in spec.queues if q.dead_letter_queue]
    named += [r.target_dlq for r in spec.rules]
    return list(dict.fromkeys(named))


def alarm_resources(settings: Settings, spec: StackSpec, ids: Ids) -> dict[str, Any]:
    names = settings.names
    alarms: dict[str, Any] = {}
    for dlq in dead_letter_queues(spec):
        alarms[f"{ids.queues[dlq]}DepthAlarm"] = _alarm(
            f"{dlq}-depth",
            f"Messages in {dlq}: events that failed every retry; inspect and re-drive them "
            "(python -m scripts.dlq)",
            {
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [
                    {"Name": "QueueName", "Value": get_att(ids.queues[dlq], "QueueName")}
                ],
                "Statistic": "Maximum",
            },
            threshold=0,
            period=60,
        )
    quarantine = ids.topics[names.quarantine_topic]
    alarms["QuarantineRateAlarm"] = _alarm(
        f"{settings.prefix}-quarantine-rate",
        "More events quarantined in an hour than the threshold: the provider's schema may have "
        "changed; read the quarantine topic's messages for the reasons",
        {
            "Namespace": "AWS/SNS",
            "MetricName": "NumberOfMessagesPublished",
            "Dimensions": [{"Name": "TopicName", "Value": get_att(quarantine, "TopicName")}],
            "Statistic": "Sum",
        },
        threshold=ref("QuarantinedPerHourAlarmThreshold"),
        period=3600,
    )
    ingest = ids.queues[names.ingest_queue]
    alarms["EventAgeAlarm"] = _alarm(
        f"{settings.prefix}-event-age",
        "The oldest message in the ingest queue is older than the threshold for 5 minutes: "
        "the ingest function is failing, throttled or waiting on an interaction",
        {
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateAgeOfOldestMessage",
            "Dimensions": [{"Name": "QueueName", "Value": get_att(ingest, "QueueName")}],
            "Statistic": "Maximum",
        },
        threshold=ref("EventAgeAlarmSeconds"),
        period=60,
        evaluation_periods=5,
    )
    return alarms


def _relay_metric(name: str, stat: str, label: str, stage: str, **dimensions: str) -> list[Any]:
    dims: list[str] = []
    for key, value in {**dimensions, "service": METRICS_SERVICE, "stage": stage}.items():
        dims += [key, value]
    return [METRICS_NAMESPACE, name, *dims, {"stat": stat, "label": label}]


def dashboard_body(settings: Settings, alarm_ids: Sequence[str]) -> dict[str, Any]:
    """The dashboard as CloudWatch wants it: a JSON string, region and alarm ARNs substituted."""
    latency = [
        _relay_metric(metric, stat, f"{metric} {stat}", settings.stage)
        for metric in ("EventAgeMs", "RecordMs")
        for stat in ("p50", "p90", "p99")
    ] + [
        _relay_metric(
            "PublishMs", stat, f"PublishMs {stat} {consumer}", settings.stage, consumer=consumer
        )
        for consumer in settings.consumers
        for stat in ("p50", "p99")
    ]

    def hourly(metrics: list[str]) -> list[list[Any]]:
        return [_relay_metric(m, "Sum", m, settings.stage) for m in metrics]

    ingest_queue = settings.names.ingest_queue
    widgets = [
        ("Latency percentiles (ms): event age, per record, publish", latency, 300, 0),
        ("Throughput per hour", hourly(["Received", "Delivered"]), 3600, 12),
        (
            "Duplicates, late, quarantined per hour",
            hourly(["Duplicates", "Late", "Quarantined"]),
            3600,
            0,
        ),
        (
            "Ingest queue",
            [
                [
                    "AWS/SQS",
                    "ApproximateAgeOfOldestMessage",
                    "QueueName",
                    ingest_queue,
                    {"stat": "Maximum"},
                ],
                [
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    "QueueName",
                    ingest_queue,
                    {"stat": "Maximum"},
                ],
                [
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    "QueueName",
                    settings.names.ingest_dlq,
                    {"stat": "Maximum", "label": "DLQ depth"},
                ],
            ],
            60,
            12,
        ),
    ]
    body: dict[str, Any] = {"widgets": []}
    for index, (title, metrics, period, x) in enumerate(widgets):
        body["widgets"].append(
            {
                "type": "metric",
                "x": x,
                "y": (index // 2) * 6,
                "width": 12,
                "height": 6,
                "properties": {
                    "title": title,
                    "region": "${AWS::Region}",
                    "view": "timeSeries",
                    "stacked": False,
                    "period": period,
                    "metrics": metrics,
                },
            }
        )
    body["widgets"].append(
        {
            "type": "alarm",
            "x": 0,
            "y": 12,
            "width": 24,
            "height": 3,
            "properties": {
                "title": "Alarms",
                "alarms": [f"${{{alarm_id}.Arn}}" for alarm_id in alarm_ids],
            },
        }
    )
    return body


def merge_template(
    settings: Settings, sqs_handlers: Mapping[str, str], spec: StackSpec | None = None
) -> dict[str, Any]:
    """The merge template of the stage: everything `scripts.provision infra` creates, and more.

    `sqs_handlers` maps app.py's SQS handler names to their queues (`app_sqs_handlers`).
    """
    spec = spec or stack_spec(settings)
    ids = Ids(settings, spec)
    partner = partner_rule(settings, "<partner event source>")
    resources: dict[str, Any] = {}
    resources.update(kms_resources(settings))
    for queue in spec.queues:
        resources[ids.queues[queue.name]] = queue_resource(queue, ids)
    for topic in spec.topics:
        resources[ids.topics[topic.name]] = topic_resource(topic)
    for table in spec.tables:
        resources[ids.tables[table.name]] = table_resource(table, settings.stage)
    resources[EVENT_BUS_ID] = {
        "Type": "AWS::Events::EventBus",
        "Properties": {"Name": spec.event_bus},
    }
    for rule in spec.rules:
        bus = ref(EVENT_BUS_ID) if rule.event_bus is None else rule.event_bus
        resources[ids.rules[rule.name]] = rule_resource(rule, bus, ids)
    resources.update(partner_resources(partner, ids))
    resources.update(queue_policies(spec, ids, partner))
    resources.update(function_patches(settings, spec, ids, sqs_handlers))
    resources.update(api_patches(spec))
    resources.update(secret_resources(settings, spec))
    alarms = alarm_resources(settings, spec, ids)
    resources.update(alarms)
    resources[DASHBOARD_ID] = {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {
            "DashboardName": settings.prefix,
            "DashboardBody": {"Fn::Sub": json.dumps(dashboard_body(settings, list(alarms)))},
        },
    }
    outputs: dict[str, Any] = {
        "EventBusName": {"Value": ref(EVENT_BUS_ID)},
        "EventBusArn": {"Value": get_att(EVENT_BUS_ID, "Arn")},
        "IngestQueueUrl": {"Value": ref(ids.queues[settings.names.ingest_queue])},
        "IngestDeadLetterQueueUrl": {"Value": ref(ids.queues[settings.names.ingest_dlq])},
        "QuarantineTopicArn": {"Value": ref(ids.topics[settings.names.quarantine_topic])},
        "DashboardName": {"Value": ref(DASHBOARD_ID)},
    }
    for consumer, topic in spec.consumer_topics.items():
        outputs[f"{logical_id(consumer, '', 'Topic')}Arn"] = {
            "Value": ref(ids.topics[topic]),
            "Description": f"SNS topic of consumer {consumer}",
        }
    return {
        "Parameters": {
            "UseCustomerManagedKey": {
                "Type": "String",
                "AllowedValues": ["true", "false"],
                "Default": "false",
                "Description": "true: encrypt queues, topics and tables with a new customer-"
                "managed KMS key; false: AWS managed keys (SQS-managed SSE for queues)",
            },
            "AlarmTopicArn": {
                "Type": "String",
                "Default": "",
                "Description": "SNS topic the alarms notify (empty: alarms without actions)",
            },
            "EventAgeAlarmSeconds": {
                "Type": "Number",
                "Default": 300,
                "MinValue": 1,
                "Description": "Alarm when the oldest ingest message is older than this",
            },
            "QuarantinedPerHourAlarmThreshold": {
                "Type": "Number",
                "Default": 10,
                "MinValue": 0,
                "Description": "Alarm when more events than this are quarantined in an hour",
            },
            "PartnerEventSourceName": {
                "Type": "String",
                "Default": "",
                "AllowedPattern": r"^(aws\.partner/.+)?$",
                "Description": "A SaaS partner event source (aws.partner/...) to associate with "
                "a bus of the same name and route to the ingest queue (empty: none)",
            },
        },
        "Conditions": {
            CUSTOMER_KEY_CONDITION: {"Fn::Equals": [ref("UseCustomerManagedKey"), "true"]},
            ALARM_TOPIC_CONDITION: {"Fn::Not": [{"Fn::Equals": [ref("AlarmTopicArn"), ""]}]},
            PARTNER_CONDITION: {"Fn::Not": [{"Fn::Equals": [ref("PartnerEventSourceName"), ""]}]},
        },
        "Resources": resources,
        "Outputs": outputs,
    }


# --------------------------------------------------------------------------- IAM policies

# Resource ARNs by grant kind. Region and account stay wildcards (one file serves every
# region); names pin each grant.
_ARN_FORMATS = {
    "queue": "arn:aws:sqs:*:*:{name}",
    "topic": "arn:aws:sns:*:*:{name}",
    "table": "arn:aws:dynamodb:*:*:table/{name}",
    "bus": "arn:aws:events:*:*:event-bus/{name}",
    # Secrets Manager appends "-" and six random characters to every secret's ARN.
    "secret": "arn:aws:secretsmanager:*:*:secret:{name}-??????",
    "log-group": "arn:aws:logs:*:*:log-group:{name}:*",
}


def grant_arns(grant: Grant) -> list[str]:
    return [_ARN_FORMATS[grant.kind].format(name=name) for name in grant.names]


def function_policy(spec: StackSpec, function: FunctionSpec) -> dict[str, Any]:
    """Least privilege for one function: its own grants on named resources, nothing on "*"
    but X-Ray's write actions (which take no resource) when tracing is on."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": grant.sid,
            "Effect": "Allow",
            "Action": sorted(set(grant.actions)),
            "Resource": grant_arns(grant),
        }
        for grant in function.grants
    ]
    if spec.tracing:
        statements.append(
            {
                "Sid": "WriteTraces",  # as AWS's AWSXRayDaemonWriteAccess grants them
                "Effect": "Allow",
                "Action": list(XRAY_WRITE_ACTIONS),
                "Resource": "*",
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def policy_file_name(stage: str, function: str) -> str:
    return f"policy-{stage}-{function}.json"


def policy_path(project_dir: Path, stage: str, function: str) -> Path:
    return project_dir / ".chalice" / policy_file_name(stage, function)


def policy_text(policy: Mapping[str, Any]) -> str:
    return json.dumps(policy, indent=2) + "\n"


# --------------------------------------------------------------------------- .chalice/config.json

DEPLOYED_STAGES = ("dev", "prod")


def chalice_stage_config(spec: StackSpec, deployed: bool) -> dict[str, Any]:
    """The parts of a stage's `.chalice/config.json` entry that the model decides.

    Functions' timeout, memory and reserved concurrency come from chalicelib.timing through
    the model; deployed stages get one policy file per function, X-Ray and log retention.
    """
    functions: dict[str, Any] = {}
    for function in spec.functions:
        entry: dict[str, Any] = {
            "lambda_timeout": function.timeout,
            "lambda_memory_size": function.memory,
        }
        if deployed:
            entry["iam_policy_file"] = policy_file_name(spec.stage, function.name)
        if deployed and function.reserved_concurrency is not None:
            entry["reserved_concurrency"] = function.reserved_concurrency
        functions[function.name] = entry
    config: dict[str, Any] = {"lambda_functions": functions}
    if deployed:
        config["xray"] = spec.tracing
        config["log_retention_in_days"] = spec.functions[0].log_group.retention_days
    return config


def generated_files(project_dir: Path) -> dict[Path, str]:
    """Every file generated from the model: config.json and the deployed stages' policies."""
    config_path = project_dir / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    files: dict[Path, str] = {}
    for stage, entry in config.get("stages", {}).items():
        deployed = stage in DEPLOYED_STAGES
        spec = stack_spec(stage_settings(project_dir, stage))
        entry.update(chalice_stage_config(spec, deployed))
        if deployed:
            for function in spec.functions:
                files[policy_path(project_dir, stage, function.name)] = policy_text(
                    function_policy(spec, function)
                )
    files[config_path] = json.dumps(config, indent=2) + "\n"
    return files


def stale_files(project_dir: Path) -> list[Path]:
    """Generated files that differ from the model (or are missing)."""
    stale = []
    for path, text in generated_files(project_dir).items():
        if not path.exists() or json.loads(path.read_text()) != json.loads(text):
            stale.append(path)
    return stale


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.package", description=__doc__)
    parser.add_argument("--stage", default=os.environ.get("RELAY_STAGE") or "dev")
    parser.add_argument("--out", type=Path, help="where to write the merge template")
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    parser.add_argument(
        "--write-config",
        action="store_true",
        help="(re)write .chalice/config.json's function settings and the stages' "
        ".chalice/policy-<stage>-<function>.json from the stack model",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = stage_settings(args.project_dir, args.stage)
        if args.write_config:
            for path, text in generated_files(args.project_dir).items():
                path.write_text(text)
                print(f"wrote {path}")
        stale = stale_files(args.project_dir)
    except (PackageError, ValueError) as error:
        print(f"package: {error}", file=sys.stderr)
        return 1
    if stale:
        print(
            f"package: {', '.join(map(str, stale))} differ(s) from the stack model; review and "
            "run `python -m scripts.package --write-config`",
            file=sys.stderr,
        )
        return 1
    if args.out:
        try:
            handlers = app_sqs_handlers(
                args.project_dir, stage_load_env(args.project_dir, args.stage)
            )
            template = merge_template(settings, handlers)
        except PackageError as error:
            print(f"package: {error}", file=sys.stderr)
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(template, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0

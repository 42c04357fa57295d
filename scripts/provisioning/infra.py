"""Create a stage's AWS infrastructure from its `StackSpec` (chalicelib.stack), idempotently.

This is the boto3 renderer of the stack model; scripts.packaging.template is the SAM one.

Each `ensure_*` function reads what exists first and decides from that: present resources
are left alone (their drifted settings are updated), missing ones are created, and on a dry
run nothing but reads is sent. The same code runs against moto and real AWS; the endpoint
comes from `AWS_ENDPOINT_URL` through boto3 itself.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from chalicelib.aws import error_code
from chalicelib.stack import (
    LogGroupSpec,
    QueueSpec,
    RuleSpec,
    SecretSpec,
    StackSpec,
    TableSpec,
    TopicSpec,
)
from scripts.provisioning.actions import Action

# What Secrets Manager may put in a generated secret: letters and digits, as the packaged
# template's GenerateSecretString (ExcludePunctuation) does.
_SECRET_ALPHABET = string.ascii_letters + string.digits


@dataclass
class Clients:
    sqs: Any
    sns: Any
    dynamodb: Any
    events: Any
    logs: Any = None
    secretsmanager: Any = None

    @classmethod
    def from_session(cls, session: boto3.Session, endpoint_url: str | None = None) -> Clients:
        def client(name: str) -> Any:
            return session.client(name, endpoint_url=endpoint_url)

        return cls(
            client("sqs"),
            client("sns"),
            client("dynamodb"),
            client("events"),
            client("logs"),
            client("secretsmanager"),
        )


def _error_code(error: ClientError) -> str:
    return error_code(error)


def _queue_url(sqs: Any, name: str) -> str | None:
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as error:
        if "NonExistentQueue" in _error_code(error):
            return None
        raise


def _queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]


def _would(status_if_real: str, dry_run: bool) -> str:
    return f"would {status_if_real.removesuffix('d')}" if dry_run else status_if_real


def ensure_queue(sqs: Any, spec: QueueSpec, dry_run: bool) -> Action:
    dlq_arn = None
    if spec.dead_letter_queue:
        dlq_url = _queue_url(sqs, spec.dead_letter_queue)
        # On a dry run the DLQ may not exist yet: plan with a placeholder ARN.
        dlq_arn = _queue_arn(sqs, dlq_url) if dlq_url else f"<arn of {spec.dead_letter_queue}>"
    desired = spec.attributes(dlq_arn)
    url = _queue_url(sqs, spec.name)
    if url is None:
        if not dry_run:
            sqs.create_queue(QueueName=spec.name, Attributes=desired)
        return Action("queue", spec.name, _would("created", dry_run))
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    drift = {k: v for k, v in desired.items() if not _same_attribute(current.get(k), v)}
    if not drift:
        return Action("queue", spec.name, "present")
    if not dry_run:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=drift)
    return Action("queue", spec.name, _would("updated", dry_run), ", ".join(sorted(drift)))


def _same_attribute(current: str | None, desired: str) -> bool:
    if current is None:
        return False
    if desired.startswith("{"):
        return json.loads(current) == json.loads(desired)
    return current.lower() == desired.lower()


def topic_arn(sns: Any, name: str) -> str | None:
    paginator = sns.get_paginator("list_topics")
    for page in paginator.paginate():
        for topic in page["Topics"]:
            if topic["TopicArn"].rsplit(":", 1)[-1] == name:
                return topic["TopicArn"]
    return None


def ensure_topic(sns: Any, spec: TopicSpec, dry_run: bool) -> Action:
    arn = topic_arn(sns, spec.name)
    if arn is None:
        if not dry_run:
            sns.create_topic(Name=spec.name, Attributes=spec.attributes())
        return Action("topic", spec.name, _would("created", dry_run))
    current = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    # FifoTopic cannot change after creation; encryption can.
    drift = {
        k: v for k, v in spec.attributes().items() if k == "KmsMasterKeyId" and current.get(k) != v
    }
    if not drift:
        return Action("topic", spec.name, "present")
    if not dry_run:
        for key, value in drift.items():
            sns.set_topic_attributes(TopicArn=arn, AttributeName=key, AttributeValue=value)
    return Action("topic", spec.name, _would("updated", dry_run), ", ".join(sorted(drift)))


def ensure_table(dynamodb: Any, spec: TableSpec, dry_run: bool) -> list[Action]:
    try:
        dynamodb.describe_table(TableName=spec.name)
        exists = True
    except ClientError as error:
        if _error_code(error) != "ResourceNotFoundException":
            raise
        exists = False
    actions = []
    if exists:
        actions.append(Action("table", spec.name, "present"))
    else:
        if not dry_run:
            _create_table(dynamodb, spec)
        actions.append(Action("table", spec.name, _would("created", dry_run)))
    actions.append(_ensure_ttl(dynamodb, spec, exists, dry_run))
    actions.append(_ensure_point_in_time_recovery(dynamodb, spec, exists, dry_run))
    return actions


def _create_table(dynamodb: Any, spec: TableSpec) -> None:
    request: dict[str, Any] = {
        "TableName": spec.name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": spec.key_schema(),
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": "S"} for name in spec.attribute_names()
        ],
        # KMS with the AWS managed key aws/dynamodb, as the packaged template does.
        "SSESpecification": {"Enabled": spec.kms_encryption, "SSEType": "KMS"},
    }
    dynamodb.create_table(**request)
    dynamodb.get_waiter("table_exists").wait(TableName=spec.name)


def _ensure_point_in_time_recovery(
    dynamodb: Any, spec: TableSpec, exists: bool, dry_run: bool
) -> Action:
    wanted = "ENABLED" if spec.point_in_time_recovery else "DISABLED"
    if exists:
        description = dynamodb.describe_continuous_backups(TableName=spec.name)
        backups = description["ContinuousBackupsDescription"]
        status = backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus")
        if status == wanted:
            return Action("pitr", spec.name, "present", wanted.lower())
    if not dry_run:
        dynamodb.update_continuous_backups(
            TableName=spec.name,
            PointInTimeRecoverySpecification={
                "PointInTimeRecoveryEnabled": spec.point_in_time_recovery
            },
        )
    return Action("pitr", spec.name, _would("updated", dry_run), wanted.lower())


def _ensure_ttl(dynamodb: Any, spec: TableSpec, exists: bool, dry_run: bool) -> Action:
    name = f"{spec.name}.{spec.ttl_attribute}"
    if exists:
        ttl = dynamodb.describe_time_to_live(TableName=spec.name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            return Action("ttl", name, "present")
    if not dry_run:
        dynamodb.update_time_to_live(
            TableName=spec.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
        )
    return Action("ttl", name, _would("created", dry_run))


def ensure_bus(events: Any, name: str, dry_run: bool) -> Action:
    try:
        events.describe_event_bus(Name=name)
        return Action("bus", name, "present")
    except ClientError as error:
        if _error_code(error) != "ResourceNotFoundException":
            raise
    if not dry_run:
        events.create_event_bus(Name=name)
    return Action("bus", name, _would("created", dry_run))


def ensure_rule(
    clients: Clients, bus: str, rule: RuleSpec, dry_run: bool
) -> tuple[list[Action], str | None]:
    """The rule, its SQS target, and the queue policy admitting only that rule."""
    actions = []
    pattern = json.dumps(rule.pattern, sort_keys=True)
    try:
        current = clients.events.describe_rule(Name=rule.name, EventBusName=bus)
    except ClientError as error:
        if _error_code(error) != "ResourceNotFoundException":
            raise
        current = None
    if current is None:
        status = _would("created", dry_run)
    elif json.loads(current.get("EventPattern", "{}")) != rule.pattern or (
        current.get("State") != "ENABLED"
    ):
        status = _would("updated", dry_run)
    else:
        status = "present"
    rule_arn = current["Arn"] if current else None
    if status in ("created", "updated"):
        rule_arn = clients.events.put_rule(
            Name=rule.name,
            EventBusName=bus,
            EventPattern=pattern,
            State="ENABLED",
            Description="CXone Event Relay: provider events to the ingest queue",
        )["RuleArn"]
    actions.append(Action("rule", rule.name, status))

    queue_url = _queue_url(clients.sqs, rule.target_queue)
    dlq_url = _queue_url(clients.sqs, rule.target_dlq)
    if queue_url is None or dlq_url is None or rule_arn is None:
        actions.append(Action("target", f"{rule.name}/{rule.target_id}", "would create"))
        for name in (rule.target_queue, rule.target_dlq):
            actions.append(Action("queue-policy", name, "would create"))
        return actions, rule_arn
    actions.append(_ensure_target(clients, bus, rule, queue_url, dlq_url, dry_run))
    # EventBridge sends to the target, and to its dead-letter queue when delivery fails.
    for name, url in ((rule.target_queue, queue_url), (rule.target_dlq, dlq_url)):
        actions.append(_ensure_queue_policy(clients.sqs, name, url, rule, rule_arn, dry_run))
    return actions, rule_arn


def _ensure_target(
    clients: Clients, bus: str, rule: RuleSpec, queue_url: str, dlq_url: str, dry_run: bool
) -> Action:
    desired = {
        "Id": rule.target_id,
        "Arn": _queue_arn(clients.sqs, queue_url),
        "RetryPolicy": {
            "MaximumRetryAttempts": rule.max_retry_attempts,
            "MaximumEventAgeInSeconds": rule.max_event_age_seconds,
        },
        "DeadLetterConfig": {"Arn": _queue_arn(clients.sqs, dlq_url)},
    }
    targets = clients.events.list_targets_by_rule(Rule=rule.name, EventBusName=bus)["Targets"]
    current = next((t for t in targets if t["Id"] == rule.target_id), None)
    name = f"{rule.name}/{rule.target_id}"
    if current is not None and all(current.get(k) == v for k, v in desired.items()):
        return Action("target", name, "present")
    status = _would("created" if current is None else "updated", dry_run)
    if not dry_run:
        result = clients.events.put_targets(Rule=rule.name, EventBusName=bus, Targets=[desired])
        if result.get("FailedEntryCount"):
            raise RuntimeError(f"put_targets failed for {name}: {result['FailedEntries']}")
    return Action("target", name, status)


def queue_policy(queue_arn: str, rule_arns_by_sid: dict[str, list[str]]) -> dict[str, Any]:
    """Only EventBridge, and only on behalf of these rules, may send to the queue; one
    statement per Sid (RuleSpec.policy_sid)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": sid,
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": sorted(rule_arns)}},
            }
            for sid, rule_arns in sorted(rule_arns_by_sid.items())
        ],
    }


def _ensure_queue_policy(
    sqs: Any, queue_name: str, queue_url: str, rule: RuleSpec, rule_arn: str, dry_run: bool
) -> Action:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
    current_raw = attributes["Attributes"].get("Policy")
    current = json.loads(current_raw) if current_raw else None
    admitted: dict[str, list[str]] = {}
    if current:
        for statement in current.get("Statement", []):
            arns = statement.get("Condition", {}).get("ArnEquals", {}).get("aws:SourceArn", [])
            sid = statement.get("Sid", rule.policy_sid)
            admitted.setdefault(sid, []).extend([arns] if isinstance(arns, str) else arns)
    if rule_arn in admitted.get(rule.policy_sid, []):
        return Action("queue-policy", queue_name, "present", f"admits {rule.name}")
    admitted.setdefault(rule.policy_sid, []).append(rule_arn)
    desired = queue_policy(attributes["Attributes"]["QueueArn"], admitted)
    if not dry_run:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(desired)})
    status = _would("created" if current is None else "updated", dry_run)
    return Action("queue-policy", queue_name, status, f"admits {rule.name}")


def provision_infrastructure(clients: Clients, spec: StackSpec, dry_run: bool) -> list[Action]:
    """The data path, in dependency order: queues, topics, tables, bus, rules, targets,
    queue policies and the generated secrets."""
    actions: list[Action] = []
    for queue in spec.queues:  # DLQs come first in the spec
        actions.append(ensure_queue(clients.sqs, queue, dry_run))
    for topic in spec.topics:
        actions.append(ensure_topic(clients.sns, topic, dry_run))
    for table in spec.tables:
        actions += ensure_table(clients.dynamodb, table, dry_run)
    actions.append(ensure_bus(clients.events, spec.event_bus, dry_run))
    for rule in spec.rules:
        rule_actions, _ = ensure_rule(clients, spec.rule_bus(rule), rule, dry_run)
        actions += rule_actions
    # The functions read these keys (push signatures, page cursors) from their first request.
    for secret in spec.secrets:
        actions.append(ensure_generated_secret(clients.secretsmanager, secret, dry_run))
    return actions


def ensure_log_group(logs: Any, spec: LogGroupSpec, dry_run: bool) -> Action:
    """The group with its retention (Lambda would otherwise create one kept forever)."""
    found = logs.describe_log_groups(logGroupNamePrefix=spec.name).get("logGroups", [])
    current = next((g for g in found if g["logGroupName"] == spec.name), None)
    detail = f"{spec.retention_days} days"
    if current is not None and current.get("retentionInDays") == spec.retention_days:
        return Action("log-group", spec.name, "present", detail)
    if not dry_run:
        if current is None:
            logs.create_log_group(logGroupName=spec.name)
        logs.put_retention_policy(logGroupName=spec.name, retentionInDays=spec.retention_days)
    status = _would("created" if current is None else "updated", dry_run)
    return Action("log-group", spec.name, status, detail)


def generate_secret_value(length: int) -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(length))


def ensure_generated_secret(secretsmanager: Any, spec: SecretSpec, dry_run: bool) -> Action:
    """A random secret, created once and never replaced by a re-run (rotation is its own
    step); the action names the secret, never its value."""
    try:
        secretsmanager.describe_secret(SecretId=spec.name)
        return Action("secret", spec.name, "present")
    except ClientError as error:
        if _error_code(error) != "ResourceNotFoundException":
            raise
    if not dry_run:
        secretsmanager.create_secret(
            Name=spec.name,
            Description=spec.description,
            SecretString=generate_secret_value(spec.length),
        )
    detail = f"random value, {spec.length} characters"
    return Action("secret", spec.name, _would("created", dry_run), detail)


def provision_stack(clients: Clients, spec: StackSpec, dry_run: bool) -> list[Action]:
    """The whole model but the functions: the data path and the log groups (with retention,
    before Lambda makes them without)."""
    actions = provision_infrastructure(clients, spec, dry_run)
    for group in spec.log_groups:
        actions.append(ensure_log_group(clients.logs, group, dry_run))
    return actions

"""The two deploy paths build the same system: `scripts.provision` and `make package`.

For dev and prod, `python -m scripts.provision infra` runs against the moto server (in a
region of its own, so a prefix lists this stage's resources and nothing else) and what it
created is read back from AWS; the packaged template (dist/sam.json) is read as
CloudFormation would create it with its default parameters. Both become the same summary of
resource sets and security-relevant properties (encryption, point-in-time recovery, TTL,
retention, redrive, rules and their targets, queue policies, IAM policies), compared whole.
A consumer added to CONSUMERS in `.chalice/config.json` must add its topic to both.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from rich.console import Console

from chalicelib.stack import function_physical_name
from chalicelib.timing import FUNCTIONS
from scripts.packaging.template import policy_path
from scripts.provisioning import cli as provision_cli
from tests.support.packaged import PROJECT, Packaged, copy_project, packaged_stage

STAGES = ("dev", "prod")
PROVISION_REGION = "eu-west-3"
BIN = Path(sys.executable).parent

Summary = dict[str, Any]


# --------------------------------------------------------------------------- provisioned


def provision(stage: str, project_dir: Path, *extra: str) -> tuple[int, str]:
    """`python -m scripts.provision infra` as a user runs it; its exit code and output."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):  # --json prints to stdout
        code = provision_cli.main(
            ["infra", "--stage", stage, "--project-dir", str(project_dir), *extra],
            console=Console(file=buffer, width=250, color_system=None),
        )
    return code, buffer.getvalue()


def _queue_name(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


def provisioned_summary(session: boto3.Session, prefix: str, bus: str) -> Summary:
    """What provisioning created, read back from AWS by listing (extras would show)."""
    sqs, sns, dynamodb = session.client("sqs"), session.client("sns"), session.client("dynamodb")
    logs, secrets, events = (
        session.client("logs"),
        session.client("secretsmanager"),
        session.client("events"),
    )
    queues, policies = {}, {}
    for url in sqs.list_queues(QueueNamePrefix=f"{prefix}-").get("QueueUrls", []):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        name = _queue_name(attributes["QueueArn"])
        redrive = json.loads(attributes["RedrivePolicy"]) if "RedrivePolicy" in attributes else None
        queues[name] = {
            "visibility": int(attributes["VisibilityTimeout"]),
            "retention": int(attributes["MessageRetentionPeriod"]),
            "encryption": "sqs-managed" if attributes["SqsManagedSseEnabled"] == "true" else None,
            "redrive": redrive
            and (_queue_name(redrive["deadLetterTargetArn"]), int(redrive["maxReceiveCount"])),
        }
        if "Policy" in attributes:
            policies[name] = {
                s["Sid"]: sorted(
                    arn.rsplit("/", 1)[-1] for arn in s["Condition"]["ArnEquals"]["aws:SourceArn"]
                )
                for s in json.loads(attributes["Policy"])["Statement"]
                if s["Principal"] == {"Service": "events.amazonaws.com"}
                and s["Action"] == "sqs:SendMessage"
            }
    topics = {}
    for topic in sns.list_topics()["Topics"]:
        name = topic["TopicArn"].rsplit(":", 1)[-1]
        if name.startswith(f"{prefix}-"):
            attributes = sns.get_topic_attributes(TopicArn=topic["TopicArn"])["Attributes"]
            topics[name] = {"kms": attributes.get("KmsMasterKeyId")}
    tables = {}
    for name in dynamodb.list_tables()["TableNames"]:
        if not name.startswith(f"{prefix}-"):
            continue
        table = dynamodb.describe_table(TableName=name)["Table"]
        backups = dynamodb.describe_continuous_backups(TableName=name)[
            "ContinuousBackupsDescription"
        ]
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        tables[name] = {
            "keys": table["KeySchema"],
            "encryption": table.get("SSEDescription", {}).get("SSEType"),
            "pitr": backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]
            == "ENABLED",
            "ttl": ttl.get("AttributeName") if ttl["TimeToLiveStatus"] == "ENABLED" else None,
        }
    log_groups = {
        g["logGroupName"]: g.get("retentionInDays")
        for group_prefix in (f"/aws/lambda/{prefix}", f"/aws/apigateway/{prefix}")
        for g in logs.describe_log_groups(logGroupNamePrefix=group_prefix)["logGroups"]
        if g["logGroupName"].split("/")[-1].removesuffix("-access")
        in (
            prefix,
            *(f"{prefix}-{f}" for f in FUNCTIONS),
        )
    }
    secret_names = {
        s["Name"]
        for s in secrets.list_secrets()["SecretList"]
        if s["Name"].startswith(f"{prefix}-")
    }
    rules = {}
    for bus_name in (bus, "default"):
        for rule in events.list_rules(EventBusName=bus_name, NamePrefix=prefix)["Rules"]:
            [target] = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus_name)[
                "Targets"
            ]
            rules[rule["Name"]] = {
                "bus": bus_name,
                "pattern": json.loads(rule["EventPattern"]),
                "enabled": rule["State"] == "ENABLED",
                "target": _queue_name(target["Arn"]),
                "dead_letter_queue": _queue_name(target["DeadLetterConfig"]["Arn"]),
                "retry": (
                    target["RetryPolicy"]["MaximumRetryAttempts"],
                    target["RetryPolicy"]["MaximumEventAgeInSeconds"],
                ),
            }
    return {
        "queues": queues,
        "queue_policies": policies,
        "topics": topics,
        "tables": tables,
        "log_groups": log_groups,
        "secrets": secret_names,
        "rules": rules,
    }


# --------------------------------------------------------------------------- packaged


class Evaluated:
    """The template's values as CloudFormation resolves them with the default parameters."""

    NAME_PROPERTY = {
        "AWS::SQS::Queue": "QueueName",
        "AWS::SNS::Topic": "TopicName",
        "AWS::DynamoDB::Table": "TableName",
        "AWS::Events::EventBus": "Name",
        "AWS::Events::Rule": "Name",
        "AWS::Logs::LogGroup": "LogGroupName",
    }

    def __init__(self, template: dict[str, Any]) -> None:
        self.template = template
        self.parameters = {k: p.get("Default") for k, p in template["Parameters"].items()}
        self.conditions = {
            name: self.value(c) for name, c in template.get("Conditions", {}).items()
        }

    def created(self, resource_type: str) -> Iterator[dict[str, Any]]:
        for resource in self.template["Resources"].values():
            condition = resource.get("Condition")
            if resource["Type"] == resource_type and (not condition or self.conditions[condition]):
                yield self.value(resource["Properties"])

    def name_of(self, logical_id: str) -> str:
        resource = self.template["Resources"][logical_id]
        return str(resource["Properties"][self.NAME_PROPERTY[resource["Type"]]])

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.value(item) for item in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"}:
            name = node["Ref"]
            if name == "AWS::NoValue":
                return NO_VALUE
            return self.parameters[name] if name in self.parameters else self.name_of(name)
        if set(node) == {"Fn::GetAtt"}:  # Arn, QueueName, TopicName: the name is enough here
            return self.name_of(node["Fn::GetAtt"][0])
        if set(node) == {"Fn::If"}:
            condition, then, otherwise = node["Fn::If"]
            return self.value(then if self.conditions[condition] else otherwise)
        if set(node) == {"Fn::Equals"}:
            left, right = (self.value(v) for v in node["Fn::Equals"])
            return left == right
        if set(node) == {"Fn::Not"}:
            return not self.value(node["Fn::Not"][0])
        evaluated = {k: self.value(v) for k, v in node.items()}
        return {k: v for k, v in evaluated.items() if v is not NO_VALUE}


NO_VALUE = object()


def packaged_summary(packaged: Packaged) -> Summary:
    template = Evaluated(packaged.template)
    queues = {}
    for q in template.created("AWS::SQS::Queue"):
        redrive = q.get("RedrivePolicy")
        queues[q["QueueName"]] = {
            "visibility": q["VisibilityTimeout"],
            "retention": q["MessageRetentionPeriod"],
            "encryption": "sqs-managed" if q.get("SqsManagedSseEnabled") is True else None,
            "redrive": redrive and (redrive["deadLetterTargetArn"], redrive["maxReceiveCount"]),
        }
    policies: dict[str, dict[str, list[str]]] = {}
    for policy in template.created("AWS::SQS::QueuePolicy"):
        for statement in policy["PolicyDocument"]["Statement"]:
            for queue in policy["Queues"]:
                policies.setdefault(queue, {})[statement["Sid"]] = sorted(
                    statement["Condition"]["ArnEquals"]["aws:SourceArn"]
                )
    tables = {
        t["TableName"]: {
            "keys": t["KeySchema"],
            "encryption": t["SSESpecification"]["SSEType"]
            if t["SSESpecification"]["SSEEnabled"]
            else None,
            "pitr": t["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
            "ttl": t["TimeToLiveSpecification"]["AttributeName"]
            if t["TimeToLiveSpecification"]["Enabled"]
            else None,
        }
        for t in template.created("AWS::DynamoDB::Table")
    }
    rules = {}
    for rule in template.created("AWS::Events::Rule"):
        if "Name" not in rule:  # the schedule Chalice makes for refresh_token: not provisioned
            continue
        [target] = rule["Targets"]
        rules[rule["Name"]] = {
            "bus": rule["EventBusName"],
            "pattern": rule["EventPattern"],
            "enabled": rule["State"] == "ENABLED",
            "target": target["Arn"],
            "dead_letter_queue": target["DeadLetterConfig"]["Arn"],
            "retry": (
                target["RetryPolicy"]["MaximumRetryAttempts"],
                target["RetryPolicy"]["MaximumEventAgeInSeconds"],
            ),
        }
    return {
        "queues": queues,
        "queue_policies": policies,
        "topics": {
            t["TopicName"]: {"kms": t["KmsMasterKeyId"]}
            for t in template.created("AWS::SNS::Topic")
        },
        "tables": tables,
        "log_groups": {
            g["LogGroupName"]: g["RetentionInDays"] for g in template.created("AWS::Logs::LogGroup")
        },
        "secrets": {s["Name"] for s in template.created("AWS::SecretsManager::Secret")},
        "rules": rules,
    }


# --------------------------------------------------------------------------- the comparison


@pytest.fixture(scope="module")
def provision_session(aws_endpoint: str) -> Iterator[boto3.Session]:
    saved = {k: os.environ.get(k) for k in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    os.environ.update({"AWS_REGION": PROVISION_REGION, "AWS_DEFAULT_REGION": PROVISION_REGION})
    try:
        yield boto3.Session(region_name=PROVISION_REGION)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module", params=STAGES)
def both(
    request: pytest.FixtureRequest, provision_session: boto3.Session
) -> tuple[Summary, Summary, Packaged]:
    packaged = packaged_stage(request.param)
    code, output = provision(request.param, PROJECT)
    assert code == 0, output
    settings = packaged.settings
    provisioned = provisioned_summary(provision_session, settings.prefix, settings.names.event_bus)
    return provisioned, packaged_summary(packaged), packaged


@pytest.mark.parametrize(
    "part", ["queues", "queue_policies", "topics", "tables", "log_groups", "secrets", "rules"]
)
def test_provisioned_and_packaged_stacks_are_the_same(
    both: tuple[Summary, Summary, Packaged], part: str
) -> None:
    provisioned, packaged, _ = both
    assert packaged[part]  # something to compare
    assert provisioned[part] == packaged[part]


def test_every_security_property_is_on(both: tuple[Summary, Summary, Packaged]) -> None:
    # Equal could mean equally unprotected: the shared summary must say protected.
    _, packaged, _ = both
    assert all(q["encryption"] == "sqs-managed" for q in packaged["queues"].values())
    assert all(t["kms"] == "alias/aws/sns" for t in packaged["topics"].values())
    assert all(
        t["encryption"] == "KMS" and t["pitr"] and t["ttl"] for t in packaged["tables"].values()
    )
    assert all(days and days <= 90 for days in packaged["log_groups"].values())
    dead_letter_queues = {q["redrive"][0] for q in packaged["queues"].values() if q["redrive"]}
    assert set(packaged["queues"]) == dead_letter_queues | {
        n for n, q in packaged["queues"].items() if q["redrive"]
    }


def test_deployed_functions_get_the_packaged_policies(
    both: tuple[Summary, Summary, Packaged],
) -> None:
    # `chalice deploy` (the provisioning path) reads .chalice/policy-<stage>-<function>.json;
    # the packaged roles must hold the very same documents.
    _, _, packaged = both
    roles = {}
    for function in packaged.of_type("AWS::Serverless::Function").values():
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        [policy] = packaged.template["Resources"][role_id]["Properties"]["Policies"]
        roles[function["Properties"]["FunctionName"]] = policy["PolicyDocument"]
    for function_name in FUNCTIONS:
        physical = function_physical_name(packaged.settings, function_name)
        path = policy_path(PROJECT, packaged.stage, function_name)
        assert roles[physical] == json.loads(path.read_text()), function_name


# --------------------------------------------------------------------------- a new consumer


def test_a_consumer_added_to_the_chalice_config_gets_its_topic_on_both_paths(
    aws_endpoint: str,
) -> None:
    with tempfile.TemporaryDirectory(prefix="relay-consumer-") as root:
        project = copy_project(Path(root) / "project")
        config_path = project / ".chalice" / "config.json"
        config = json.loads(config_path.read_text())
        variables = config["stages"]["dev"]["environment_variables"]
        variables["CONSUMERS"] += ",billing-audit"
        config_path.write_text(json.dumps(config, indent=2))
        # The new topic changes the publishers' policies: regenerate them as a user would.
        merge_path = project / "merge.json"
        rendered = subprocess.run(
            [
                str(BIN / "python"),
                "-m",
                "scripts.package",
                "--stage",
                "dev",
                "--project-dir",
                str(project),
                "--write-config",
                "--out",
                str(merge_path),
            ],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
            check=False,
        )
        assert rendered.returncode == 0, rendered.stderr
        merge = json.loads(merge_path.read_text())
        packaged_topics = {
            r["Properties"]["TopicName"]
            for r in merge["Resources"].values()
            if r.get("Type") == "AWS::SNS::Topic"
        }
        code, output = provision("dev", project, "--dry-run", "--json")
        assert code == 0, output
        planned_topics = {a["name"] for a in json.loads(output) if a["kind"] == "topic"}
        ingest_policy = json.loads((project / ".chalice" / "policy-dev-ingest.json").read_text())
    assert "cxone-relay-dev-billing-audit" in packaged_topics
    assert planned_topics == packaged_topics
    published_to = {
        arn
        for s in ingest_policy["Statement"]
        if "sns:Publish" in s["Action"]
        for arn in s["Resource"]
    }
    assert "arn:aws:sns:*:*:cxone-relay-dev-billing-audit" in published_to

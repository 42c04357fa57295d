"""`make package`'s two commands on a copy of the project, then checks on the artefact.

`chalice package` builds the Lambda zip (it needs the package index) and merges the template
generated from the resource specification; `cfn-lint` must accept the result. The checks read
the packaged template as CloudFormation will: the ingest mapping reports batch item failures
and listens to the queue the template creates, tables and queues are encrypted and protected,
IAM grants nothing data-plane on "*", and every route but POST /events needs SigV4.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chalicelib.stack import XRAY_WRITE_ACTIONS, stack_spec
from scripts.packaging.template import stale_files
from tests.support.packaged import Packaged, packaged_stage

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STAGES = ("dev", "prod")


@pytest.fixture(scope="module", params=STAGES)
def packaged(request: pytest.FixtureRequest) -> Packaged:
    return packaged_stage(request.param)


def _cfn_lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    # One run for several templates: cfn-lint's start-up is most of its time.
    return subprocess.run(
        [str(BIN / "cfn-lint"), *map(str, paths)], capture_output=True, text=True, timeout=120
    )


def test_cfn_lint_passes_on_the_packaged_and_the_merge_template(
    packaged: Packaged, tmp_path: Path
) -> None:
    # The merge template's function entries are fragments of Chalice's resources (no Type);
    # everything else must stand as CloudFormation on its own.
    standalone = json.loads(json.dumps(packaged.merge))
    standalone["Resources"] = {
        name: resource for name, resource in standalone["Resources"].items() if "Type" in resource
    }
    path = tmp_path / "merge-template-standalone.json"
    path.write_text(json.dumps(standalone))
    result = _cfn_lint(packaged.out / "sam.json", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_resource_is_complete(packaged: Packaged) -> None:
    # A merge patch naming a function app.py does not define would leave a resource without
    # a Type (or a function without code).
    for name, resource in packaged.template["Resources"].items():
        assert "Type" in resource, name
    for name, function in packaged.of_type("AWS::Serverless::Function").items():
        assert function["Properties"].get("CodeUri"), name


def _queue_name(reference: Any) -> str:
    text = reference["Fn::Sub"] if isinstance(reference, dict) else reference
    return text.rsplit(":", 1)[-1]


def test_ingest_mapping_reports_batch_item_failures_from_the_templates_queue(
    packaged: Packaged,
) -> None:
    ingest = packaged.template["Resources"]["Ingest"]
    [event] = ingest["Properties"]["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue_name = _queue_name(event["Properties"]["Queue"])
    # The stage's queue: the one its functions are configured with ...
    assert queue_name == ingest["Properties"]["Environment"]["Variables"]["RELAY_INGEST_QUEUE"]
    assert queue_name == packaged.settings.names.ingest_queue
    # ... created by this template, before the function and so before its mapping.
    queues = packaged.of_type("AWS::SQS::Queue")
    [queue_id] = [i for i, q in queues.items() if q["Properties"]["QueueName"] == queue_name]
    assert queue_id in ingest["DependsOn"]


def test_every_sqs_handler_listens_to_a_queue_of_the_template(packaged: Packaged) -> None:
    queues = {
        q["Properties"]["QueueName"]: i for i, q in packaged.of_type("AWS::SQS::Queue").items()
    }
    for name, function in packaged.of_type("AWS::Serverless::Function").items():
        for event in function["Properties"].get("Events", {}).values():
            if event["Type"] == "SQS":
                queue_name = _queue_name(event["Properties"]["Queue"])
                assert queue_name in queues, (name, queue_name)
                assert queues[queue_name] in function.get("DependsOn", []), name


def test_template_resources_are_the_provisioned_specification(packaged: Packaged) -> None:
    spec = stack_spec(packaged.settings)

    def names(resource_type: str, key: str) -> set[str]:
        return {r["Properties"][key] for r in packaged.of_type(resource_type).values()}

    assert names("AWS::SQS::Queue", "QueueName") == {q.name for q in spec.queues}
    assert names("AWS::SNS::Topic", "TopicName") == {t.name for t in spec.topics}
    assert names("AWS::DynamoDB::Table", "TableName") == {t.name for t in spec.tables}
    buses = {
        r["Properties"]["Name"]
        for r in packaged.of_type("AWS::Events::EventBus").values()
        if "Condition" not in r  # the optional partner bus
    }
    assert buses == {spec.event_bus}


def test_tables_are_encrypted_with_kms_expire_and_recover(packaged: Packaged) -> None:
    tables = packaged.of_type("AWS::DynamoDB::Table")
    assert tables
    for name, table in tables.items():
        properties = table["Properties"]
        assert properties["SSESpecification"]["SSEEnabled"] is True, name
        assert properties["SSESpecification"]["SSEType"] == "KMS", name
        assert properties["TimeToLiveSpecification"]["Enabled"] is True, name
        assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
        assert properties["BillingMode"] == "PAY_PER_REQUEST", name
    retained = {t.get("DeletionPolicy") for t in tables.values()}
    assert retained == ({"Retain"} if packaged.stage == "prod" else {"Delete"})


def test_queues_have_redrive_and_encryption_and_topics_kms(packaged: Packaged) -> None:
    queues = packaged.of_type("AWS::SQS::Queue")
    dead_letter_ids = set()
    for name, queue in queues.items():
        properties = queue["Properties"]
        assert "SqsManagedSseEnabled" in properties or "KmsMasterKeyId" in properties, name
        if "RedrivePolicy" in properties:
            target = properties["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            assert target in queues
            dead_letter_ids.add(target)
    ingest_id = next(
        i
        for i, q in queues.items()
        if q["Properties"]["QueueName"] == packaged.settings.names.ingest_queue
    )
    assert "RedrivePolicy" in queues[ingest_id]["Properties"]
    # Every queue is either redriven to a DLQ or is one.
    assert set(queues) == dead_letter_ids | {
        i for i, q in queues.items() if "RedrivePolicy" in q["Properties"]
    }
    for name, topic in packaged.of_type("AWS::SNS::Topic").items():
        assert topic["Properties"]["KmsMasterKeyId"], name


def test_rules_deliver_to_the_ingest_queue_with_retries_a_dlq_and_a_scoped_policy(
    packaged: Packaged,
) -> None:
    rules = {i: r for i, r in packaged.of_type("AWS::Events::Rule").items() if "Condition" not in r}
    assert rules
    for name, rule in rules.items():
        [target] = rule["Properties"]["Targets"]
        assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0, name
        assert "Arn" in target["DeadLetterConfig"], name
    [policy] = packaged.of_type("AWS::SQS::QueuePolicy").values()
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    admitted = []
    for statement in statements.values():
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        admitted += statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    for rule_id in rules:
        assert {"Fn::GetAtt": [rule_id, "Arn"]} in admitted
    # Amazon Connect's rule lives on the default bus, admitted by a statement of its own.
    [connect] = [r for r in rules.values() if r["Properties"]["EventBusName"] == "default"]
    assert connect["Properties"]["EventPattern"] == {
        "source": ["aws.connect"],
        "detail-type": ["Amazon Connect Contact Event"],
    }
    connect_id = next(i for i, r in rules.items() if r is connect)
    assert statements["AllowAmazonConnectRule"]["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        {"Fn::GetAtt": [connect_id, "Arn"]}
    ]


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_no_iam_statement_grants_data_plane_actions_on_any_resource(packaged: Packaged) -> None:
    documents = []
    for role in packaged.of_type("AWS::IAM::Role").values():
        documents += [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
    for policy in packaged.of_type("AWS::IAM::Policy").values():
        documents.append(policy["Properties"]["PolicyDocument"])
    assert documents  # the stage's policy file reaches every function's role
    # (KMS key policies are resource policies: their "*" is the key itself; not checked here.)
    for document in documents:
        for statement in _statements(document):
            if statement.get("Effect") != "Allow":
                continue
            actions = _as_list(statement["Action"])
            assert not any(a == "*" or a.endswith(":*") for a in actions), statement
            if "*" in _as_list(statement["Resource"]):
                assert set(actions) <= set(XRAY_WRITE_ACTIONS), statement


def test_chalice_config_and_policy_files_are_generated_from_the_model() -> None:
    # Timeouts, memory, concurrency and policies live in chalicelib.timing and the stack
    # model; .chalice/ must say the same, or Chalice would deploy something else.
    assert stale_files(PROJECT) == [], "run `python -m scripts.package --write-config`"


def test_functions_timeouts_memory_and_batching_are_the_timing_tables(packaged: Packaged) -> None:
    spec = stack_spec(packaged.settings)
    for function in spec.functions:
        resource_id = "APIHandler" if function.name == "api_handler" else None
        [properties] = [
            f["Properties"]
            for i, f in packaged.of_type("AWS::Serverless::Function").items()
            if f["Properties"]["FunctionName"] == function.physical_name
            and (resource_id is None or i == resource_id)
        ]
        assert properties["Timeout"] == function.timeout, function.name
        assert properties["MemorySize"] == function.memory, function.name
        assert properties.get("ReservedConcurrentExecutions") == function.reserved_concurrency
        assert properties["Tracing"] == "Active"
        sqs_events = [e for e in properties.get("Events", {}).values() if e["Type"] == "SQS"]
        assert len(sqs_events) == (function.event_source is not None), function.name
        for event in sqs_events:
            assert function.batch is not None
            assert event["Properties"]["BatchSize"] == function.batch.batch_size
            window = event["Properties"].get("MaximumBatchingWindowInSeconds", 0)
            assert window == function.batch.maximum_batching_window_in_seconds


def test_alarms_and_dashboard_watch_the_stage(packaged: Packaged) -> None:
    alarms = packaged.of_type("AWS::CloudWatch::Alarm").values()
    watched = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms}
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in watched  # DLQ depth
    assert ("AWS/SNS", "NumberOfMessagesPublished") in watched  # quarantine rate
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage") in watched  # event age
    dlq_alarms = [
        a for a in alarms if a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    ]
    dlq_count = len(
        {
            q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            for q in packaged.of_type("AWS::SQS::Queue").values()
            if "RedrivePolicy" in q["Properties"]
        }
    )
    assert len(dlq_alarms) == dlq_count
    [dashboard] = packaged.of_type("AWS::CloudWatch::Dashboard").values()
    body = json.loads(dashboard["Properties"]["DashboardBody"]["Fn::Sub"])
    metrics = {
        metric[1]
        for widget in body["widgets"]
        if widget["type"] == "metric"
        for metric in widget["properties"]["metrics"]
        if metric[0] == "CXoneRelay"
    }
    wanted = {"EventAgeMs", "RecordMs", "PublishMs", "Received", "Delivered"}
    assert wanted | {"Duplicates", "Late", "Quarantined"} <= metrics
    stats = {
        metric[-1]["stat"]
        for widget in body["widgets"]
        if widget["type"] == "metric"
        for metric in widget["properties"]["metrics"]
        if metric[1] == "EventAgeMs"
    }
    assert {"p50", "p99"} <= stats


def test_every_route_but_push_requires_sigv4(packaged: Packaged) -> None:
    api = packaged.template["Resources"].get("RestAPI")
    if api is None:
        pytest.skip("app.py defines no routes yet: no REST API in the packaged template")
    paths = api["Properties"]["DefinitionBody"]["paths"]
    checked = 0
    for path, methods in paths.items():
        for method, operation in methods.items():
            if method == "options":  # CORS preflight carries no credentials by design
                continue
            requires_sigv4 = {"sigv4": []} in operation.get("security", [])
            if (path, method) == ("/events", "post"):
                assert not requires_sigv4  # push senders sign with HMAC, checked in the function
            else:
                assert requires_sigv4, f"{method.upper()} {path} is open"
                checked += 1
    assert checked

"""Deploy rehearsal: the packaged stack, as CloudFormation would get it, created on moto.

For dev and prod: `make package`'s dist/sam.json (tests.support.packaged), its code uploaded
to S3 as `aws cloudformation package` does, transformed by aws-sam-translator (the library SAM
itself uses, with the managed-policy loader reading moto's IAM), then created as a stack on
the moto server. The stack must reach CREATE_COMPLETE and the created resources must have the
model's properties. AWS rules that neither cfn-lint nor moto enforce are checked on the same
translated template, one named test each (scripts.packaging.deploy_rules); a last test shows
the rehearsal failing on the bug this suite was written for (a queue whose visibility is
below its function's timeout): the rehearsal refuses such a template before creating it.

What moto cannot run is replaced by name, each with its reason (`for_moto`): the resource
types its CloudFormation does not implement (API stage, alarms, queue policy, secrets) and
the API deployment it refuses are left out and checked on the translated template instead;
a Ref to the bus becomes the bus's name (moto answers it with an object: the HTTP 500 that
create_stack gave); the RestApi gets its OpenAPI title as Name; tables' SSESpecification is
spelled as moto's model reads it; event source mappings are disabled (moto would run the
functions in Docker). Properties moto drops (tracing, PITR, TTL) are read from the template.

The stacks go to a region of their own, so names (cxone-relay-dev-…) never meet another
test's resources on the shared moto server.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.cloudformation.parsing import get_model_map

from chalicelib.stack import StackSpec, stack_spec
from scripts.packaging import deploy_rules
from tests.support.packaged import Packaged, packaged_stage
from tests.support.translated import translate

REHEARSAL_REGION = "us-west-2"
STAGES = ("dev", "prod")


# What moto 5.2.5's CloudFormation cannot create, and why (read in moto/cloudformation and the
# resource models). These leave the template that goes to moto and are checked statically
# below, on the translated template AWS would get.
MOTO_CANNOT_CREATE = {
    # No CloudFormation model in moto: create_stack would leave them out silently.
    "AWS::ApiGateway::Stage": "not implemented by moto's CloudFormation",
    "AWS::CloudWatch::Alarm": "not implemented by moto's CloudFormation",
    "AWS::SQS::QueuePolicy": "not implemented by moto's CloudFormation",
    "AWS::SecretsManager::Secret": "not implemented by moto's CloudFormation",
    # moto's RestApi ignores the OpenAPI Body, so the API has no methods and a Deployment of
    # it is refused ("The REST API doesn't contain any methods").
    "AWS::ApiGateway::Deployment": "the REST API moto creates has none of the Body's methods",
}


def _without_refs_to(node: Any, replacements: dict[str, str]) -> Any:
    """`node` with every {"Ref": id} of `replacements` replaced by the value given."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in replacements:
            return replacements[node["Ref"]]
        return {key: _without_refs_to(value, replacements) for key, value in node.items()}
    if isinstance(node, list):
        return [_without_refs_to(value, replacements) for value in node]
    return node


def for_moto(template: dict[str, Any]) -> dict[str, Any]:
    """The translated template with exactly what moto cannot run replaced (see each step)."""
    resources = template["Resources"]
    text = json.dumps(template)
    # The dashboard names its alarms by ARN (${Alarm.Arn}); without the alarms, write the ARN
    # CloudFormation would put there.
    for logical_id, alarm in resources.items():
        if alarm["Type"] == "AWS::CloudWatch::Alarm":
            text = text.replace(
                "${" + logical_id + ".Arn}",
                "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:"
                + alarm["Properties"]["AlarmName"],
            )
    adapted: dict[str, Any] = json.loads(text)
    adapted.pop("Outputs", None)  # some name the removed resources
    removed = {
        logical_id
        for logical_id, resource in adapted["Resources"].items()
        if resource["Type"] in MOTO_CANNOT_CREATE
    }
    for logical_id in removed:
        del adapted["Resources"][logical_id]
    # moto's EventBus answers Ref with its object, not its name (CloudFormation's Ref value):
    # rules on the stage's bus get the name itself.
    bus_names = {
        logical_id: resource["Properties"]["Name"]
        for logical_id, resource in adapted["Resources"].items()
        if resource["Type"] == "AWS::Events::EventBus"
        and isinstance(resource["Properties"].get("Name"), str)
    }
    adapted["Resources"] = _without_refs_to(adapted["Resources"], bus_names)
    for resource in adapted["Resources"].values():
        depends_on = resource.get("DependsOn")
        if depends_on is not None:
            kept = [depends_on] if isinstance(depends_on, str) else list(depends_on)
            kept = [d for d in kept if d not in removed]
            if kept:
                resource["DependsOn"] = kept
            else:
                del resource["DependsOn"]
        properties = resource.setdefault("Properties", {})
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            # An enabled mapping makes moto run the function in Docker and push messages
            # toward the DLQ. AWS gets the template as translated.
            properties["Enabled"] = False
        if resource["Type"] == "AWS::ApiGateway::RestApi":
            # CloudFormation names the API after its OpenAPI title; moto requires Name.
            properties.setdefault("Name", properties["Body"]["info"]["title"])
        if resource["Type"] == "AWS::DynamoDB::Table" and "SSESpecification" in properties:
            # moto hands CloudFormation's SSESpecification to its API model unchanged, which
            # reads the API's field name (Enabled, not SSEEnabled). moto ignores PITR and TTL
            # in CloudFormation: both are checked on the template instead.
            sse = properties["SSESpecification"]
            properties["SSESpecification"] = {"Enabled": sse["SSEEnabled"], "SSEType": "KMS"}
    return adapted


class RehearsalRefused(AssertionError):
    """What AWS would refuse in a template, before any of it is created."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Rehearsal:
    def __init__(self, packaged: Packaged, endpoint: str) -> None:
        session = boto3.Session(region_name=REHEARSAL_REGION)
        self.packaged = packaged
        self.spec: StackSpec = stack_spec(packaged.settings)
        self.clients = {
            name: session.client(name, endpoint_url=endpoint)
            for name in (
                "s3",
                "iam",
                "cloudformation",
                "sqs",
                "sns",
                "dynamodb",
                "lambda",
                "logs",
                "secretsmanager",
                "events",
            )
        }
        s3 = self.clients["s3"]
        bucket = f"rehearsal-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REHEARSAL_REGION}
        )
        s3.upload_file(str(packaged.deployment_zip), bucket, f"{packaged.stage}/deployment.zip")
        self.template = translate(
            packaged, f"s3://{bucket}/{packaged.stage}/deployment.zip", self.clients["iam"]
        )
        self.stack_name = self.create(self.template)

    def create(self, template: dict[str, Any]) -> str:
        """Create `template` as a stack, as AWS would: refused if it breaks AWS's rules."""
        problems = deploy_rules.deploy_problems(template)
        if problems:
            raise RehearsalRefused(problems)
        cloudformation = self.clients["cloudformation"]
        stack_name = f"cxone-relay-{self.packaged.stage}-{uuid.uuid4().hex[:8]}"
        cloudformation.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(for_moto(template)),
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        cloudformation.get_waiter("stack_create_complete").wait(
            StackName=stack_name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
        return stack_name

    def status(self) -> str:
        [stack] = self.clients["cloudformation"].describe_stacks(StackName=self.stack_name)[
            "Stacks"
        ]
        return str(stack["StackStatus"])

    def delete(self) -> None:
        self.clients["cloudformation"].delete_stack(StackName=self.stack_name)


@pytest.fixture(scope="module", params=STAGES)
def rehearsal(request: pytest.FixtureRequest, aws_endpoint: str) -> Iterator[Rehearsal]:
    rehearsed = Rehearsal(packaged_stage(request.param), aws_endpoint)
    yield rehearsed
    rehearsed.delete()


# --------------------------------------------------------------------------- the stack


def test_the_packaged_stack_reaches_create_complete(rehearsal: Rehearsal) -> None:
    assert rehearsal.status() == "CREATE_COMPLETE"
    # SAM's resources became CloudFormation's: no Serverless type is left for AWS to refuse.
    types = {r["Type"] for r in rehearsal.template["Resources"].values()}
    assert not any(t.startswith("AWS::Serverless::") for t in types)
    assert "AWS::Lambda::EventSourceMapping" in types


def test_created_queues_have_the_models_visibility_and_redrive(rehearsal: Rehearsal) -> None:
    sqs = rehearsal.clients["sqs"]
    for queue in rehearsal.spec.queues:
        url = sqs.get_queue_url(QueueName=queue.name)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert int(attributes["VisibilityTimeout"]) == queue.visibility_timeout, queue.name
        assert attributes["SqsManagedSseEnabled"] == "true", queue.name
        if queue.dead_letter_queue:
            redrive = json.loads(attributes["RedrivePolicy"])
            assert redrive["deadLetterTargetArn"].endswith(f":{queue.dead_letter_queue}")
            assert int(redrive["maxReceiveCount"]) == queue.max_receive_count


def test_created_tables_and_topics_are_encrypted(rehearsal: Rehearsal) -> None:
    dynamodb, sns = rehearsal.clients["dynamodb"], rehearsal.clients["sns"]
    for table in rehearsal.spec.tables:
        description = dynamodb.describe_table(TableName=table.name)["Table"]
        assert description["SSEDescription"]["Status"] == "ENABLED", table.name
        assert description["SSEDescription"]["SSEType"] == "KMS", table.name
    arns = {t["TopicArn"].rsplit(":", 1)[-1]: t["TopicArn"] for t in sns.list_topics()["Topics"]}
    for topic in rehearsal.spec.topics:
        attributes = sns.get_topic_attributes(TopicArn=arns[topic.name])["Attributes"]
        assert attributes["KmsMasterKeyId"] == "alias/aws/sns", topic.name


def test_tables_have_the_models_pitr_and_ttl(rehearsal: Rehearsal) -> None:
    tables = {p["TableName"]: p for p in _of_type(rehearsal.template, "AWS::DynamoDB::Table")}
    assert set(tables) == {t.name for t in rehearsal.spec.tables}
    for table in rehearsal.spec.tables:
        properties = tables[table.name]
        assert properties["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": table.point_in_time_recovery
        }, table.name
        assert properties["TimeToLiveSpecification"] == {
            "AttributeName": table.ttl_attribute,
            "Enabled": True,
        }, table.name
        assert properties["KeySchema"] == table.key_schema(), table.name


def test_created_functions_have_the_timing_tables_settings(rehearsal: Rehearsal) -> None:
    lambda_client = rehearsal.clients["lambda"]
    for function in rehearsal.spec.functions:
        configuration = lambda_client.get_function_configuration(
            FunctionName=function.physical_name
        )
        assert configuration["Timeout"] == function.timeout, function.name
        assert configuration["MemorySize"] == function.memory, function.name
        concurrency = lambda_client.get_function(FunctionName=function.physical_name).get(
            "Concurrency", {}
        )
        assert concurrency.get("ReservedConcurrentExecutions") == function.reserved_concurrency
    # moto's CloudFormation drops TracingConfig: read it from the template.
    functions = {
        p["FunctionName"]: p for p in _of_type(rehearsal.template, "AWS::Lambda::Function")
    }
    for function in rehearsal.spec.functions:
        tracing = functions[function.physical_name]["TracingConfig"]
        assert tracing == {"Mode": "Active"}, function.name


def test_created_log_groups_have_the_models_retention(rehearsal: Rehearsal) -> None:
    logs = rehearsal.clients["logs"]
    for group in rehearsal.spec.log_groups:
        [found] = [
            g
            for g in logs.describe_log_groups(logGroupNamePrefix=group.name)["logGroups"]
            if g["logGroupName"] == group.name
        ]
        assert found["retentionInDays"] == group.retention_days, group.name


def test_moto_cannot_create_exactly_the_resources_the_rehearsal_leaves_out(
    rehearsal: Rehearsal,
) -> None:
    # When moto learns one of these, this fails: drop it from MOTO_CANNOT_CREATE and check it
    # on the created stack instead of statically.
    implemented = get_model_map()
    types = {r["Type"] for r in rehearsal.template["Resources"].values()}
    left_out = {t for t in types if t in MOTO_CANNOT_CREATE}
    assert {t for t in types if t not in implemented} == left_out - {"AWS::ApiGateway::Deployment"}
    assert {r["Type"] for r in for_moto(rehearsal.template)["Resources"].values()} == (
        types - left_out
    )


def _of_type(template: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [p for _, p in deploy_rules.resources(template, resource_type)]


def test_left_out_secrets_are_generated_random_values_of_the_models_length(
    rehearsal: Rehearsal,
) -> None:
    secrets = {p["Name"]: p for p in _of_type(rehearsal.template, "AWS::SecretsManager::Secret")}
    assert set(secrets) == {s.name for s in rehearsal.spec.secrets}
    for secret in rehearsal.spec.secrets:
        properties = secrets[secret.name]
        assert "SecretString" not in properties, secret.name  # never a value in the template
        generated = properties["GenerateSecretString"]
        assert generated["PasswordLength"] == secret.length, secret.name
        assert generated["ExcludePunctuation"] is True, secret.name


def test_left_out_queue_policy_admits_only_the_models_rules(rehearsal: Rehearsal) -> None:
    template = rehearsal.template
    rule_ids = {
        p["Name"]: logical_id
        for logical_id, p in deploy_rules.resources(template, "AWS::Events::Rule")
        if "Name" in p
    }
    queue_ids = {
        p["QueueName"]: logical_id
        for logical_id, p in deploy_rules.resources(template, "AWS::SQS::Queue")
    }
    [policy] = _of_type(template, "AWS::SQS::QueuePolicy")
    admitted = set()
    for statement in policy["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        for source in statement["Condition"]["ArnEquals"]["aws:SourceArn"]:
            chosen = source["Fn::If"][1] if "Fn::If" in source else source  # partner: optional
            admitted.add(chosen["Fn::GetAtt"][0])
        assert {r["Fn::GetAtt"][0] for r in statement["Resource"]} == {
            queue_ids[rehearsal.packaged.settings.names.ingest_queue],
            queue_ids[rehearsal.packaged.settings.names.ingest_dlq],
        }
    assert {rule_ids[rule.name] for rule in rehearsal.spec.rules} <= admitted
    assert admitted - {rule_ids[rule.name] for rule in rehearsal.spec.rules} == {
        "PartnerIngestRule"
    }


def test_left_out_api_stage_has_access_logs_throttling_and_tracing(rehearsal: Rehearsal) -> None:
    api = rehearsal.spec.api
    assert api is not None
    log_group_ids = {
        p["LogGroupName"]: logical_id
        for logical_id, p in deploy_rules.resources(rehearsal.template, "AWS::Logs::LogGroup")
    }
    [stage] = _of_type(rehearsal.template, "AWS::ApiGateway::Stage")
    assert stage["AccessLogSetting"]["DestinationArn"] == {
        "Fn::GetAtt": [log_group_ids[api.access_log_group.name], "Arn"]
    }
    assert stage["TracingEnabled"] is True
    [throttling] = stage["MethodSettings"]
    assert (throttling["HttpMethod"], throttling["ResourcePath"]) == ("*", "/*")
    assert throttling["ThrottlingRateLimit"] == api.throttling_rate_limit
    assert throttling["ThrottlingBurstLimit"] == api.throttling_burst_limit


def test_left_out_alarms_watch_every_dlq_and_notify_the_alarm_topic(
    rehearsal: Rehearsal,
) -> None:
    alarms = _of_type(rehearsal.template, "AWS::CloudWatch::Alarm")
    queue_names = {
        logical_id: p["QueueName"]
        for logical_id, p in deploy_rules.resources(rehearsal.template, "AWS::SQS::Queue")
    }
    watched = {
        queue_names[d["Value"]["Fn::GetAtt"][0]]
        for alarm in alarms
        if alarm["Namespace"] == "AWS/SQS"
        and alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
        for d in alarm["Dimensions"]
    }
    dead_letter_queues = {q.dead_letter_queue for q in rehearsal.spec.queues} - {None}
    assert watched == dead_letter_queues
    for alarm in alarms:
        actions = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
        assert alarm["AlarmActions"] == actions, alarm["AlarmName"]


# --------------------------------------------------------------------------- AWS's own rules


def test_every_sqs_event_source_has_visibility_of_six_times_the_function_timeout(
    rehearsal: Rehearsal,
) -> None:
    sources = list(deploy_rules.sqs_event_sources(rehearsal.template))
    assert len(sources) == len([f for f in rehearsal.spec.functions if f.event_source])
    assert deploy_rules.check_visibility_covers_timeout(rehearsal.template) == []


def test_batch_size_and_window_are_within_lambdas_limits_for_the_queue_type(
    rehearsal: Rehearsal,
) -> None:
    assert deploy_rules.check_batching_within_limits(rehearsal.template) == []


def test_every_lambda_environment_is_at_most_4_kb(rehearsal: Rehearsal) -> None:
    assert deploy_rules.check_environment_size(rehearsal.template) == []


def test_every_iam_policy_is_within_its_size_limit(rehearsal: Rehearsal) -> None:
    assert deploy_rules.check_policy_sizes(rehearsal.template) == []


def test_no_data_plane_action_is_granted_on_every_resource(rehearsal: Rehearsal) -> None:
    statements = list(deploy_rules.identity_statements(rehearsal.template))
    assert statements  # the functions' policies are there to be checked
    assert deploy_rules.check_no_data_plane_action_on_any_resource(rehearsal.template) == []


def test_the_rehearsal_fails_when_a_queue_is_less_visible_than_its_functions_timeout(
    rehearsal: Rehearsal,
) -> None:
    # Today's bug: the replay-jobs queue got 6 x the *ingest* timeout (180 s) while
    # replay_worker runs for 300 s. Lambda refuses that mapping; the rehearsal must too.
    broken = copy.deepcopy(rehearsal.template)
    replay_queue = rehearsal.packaged.settings.names.replay_queue
    [queue] = [
        r["Properties"]
        for r in broken["Resources"].values()
        if r["Type"] == "AWS::SQS::Queue" and r["Properties"]["QueueName"] == replay_queue
    ]
    queue["VisibilityTimeout"] = 180
    with pytest.raises(RehearsalRefused) as refused:
        rehearsal.create(broken)
    [problem] = refused.value.problems
    assert "less than the timeout of ReplayWorker (300 s)" in problem

    queue["VisibilityTimeout"] = 600  # above the timeout, under AWS's advised 6x
    with pytest.raises(RehearsalRefused) as refused:
        rehearsal.create(broken)
    [advice] = refused.value.problems
    assert "under 6 x" in advice


def test_each_rule_check_catches_what_it_names(rehearsal: Rehearsal) -> None:
    broken = copy.deepcopy(rehearsal.template)
    resources = broken["Resources"]
    [mapping] = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping" and r["Properties"]["BatchSize"] == 10
    ]
    mapping["BatchSize"] = 100
    mapping["MaximumBatchingWindowInSeconds"] = 0
    function = next(r for r in resources.values() if r["Type"] == "AWS::Lambda::Function")
    function["Properties"]["Environment"]["Variables"]["PADDING"] = "x" * 4096
    role = next(r for r in resources.values() if r["Type"] == "AWS::IAM::Role")
    role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Action": ["dynamodb:Scan"], "Resource": "*", "Sid": "x" * 11000}
    )
    assert deploy_rules.check_batching_within_limits(broken)
    assert deploy_rules.check_environment_size(broken)
    assert deploy_rules.check_policy_sizes(broken)
    assert deploy_rules.check_no_data_plane_action_on_any_resource(broken)

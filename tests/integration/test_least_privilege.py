"""Each function's packaged IAM policy allows what that function does and nothing else.

The packaged template (dist/sam.json, as `make package` writes it) is read as IAM would read
it: every function's role and its policies, evaluated with IAM's wildcard matching against
the real ARNs of the stage's tables, topics, secrets, queues, bus and log groups, for every
action a function could be tempted to use. The expected access is written out here, by hand,
from what each function does, not derived from the stack model that generated the policies:
a grant added to the model without a reason here fails this test.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.config import ResourceNames
from chalicelib.stack import XRAY_WRITE_ACTIONS, function_physical_name
from chalicelib.timing import FUNCTIONS, FunctionName
from tests.support.packaged import Packaged, packaged_stage

STAGES = ("dev", "prod")
REGION, ACCOUNT = "eu-west-1", "123456789012"

# Every action of each kind a function could use (or misuse) on one resource.
ACTIONS = {
    "table": (
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchGetItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:DescribeTable",
        "dynamodb:DeleteTable",
    ),
    "topic": ("sns:Publish", "sns:Subscribe", "sns:SetTopicAttributes", "sns:DeleteTopic"),
    "secret": (
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:CreateSecret",
        "secretsmanager:UpdateSecret",
        "secretsmanager:DescribeSecret",
        "secretsmanager:RotateSecret",
        "secretsmanager:DeleteSecret",
    ),
    "queue": (
        "sqs:SendMessage",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "sqs:SetQueueAttributes",
        "sqs:PurgeQueue",
        "sqs:DeleteQueue",
    ),
    "bus": ("events:PutEvents", "events:PutRule", "events:PutTargets", "events:DeleteRule"),
    "log-group": ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"),
}
CONSUME = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",  # a record's backoff before it is reported failed
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
}
SEND = {"sqs:GetQueueUrl", "sqs:SendMessage"}
READ_EVENTS = {"dynamodb:BatchGetItem", "dynamodb:Query"}
OWN_LOGS = set(ACTIONS["log-group"])


@dataclass(frozen=True)
class Resource:
    kind: str
    label: str  # what the resource is, for messages
    arn: str


def stage_resources(
    names: ResourceNames, consumer_topics: dict[str, str], stage_prefix: str
) -> dict[str, Resource]:
    """Every resource of the stage a function could touch, by a short key, with its ARN."""
    arn = f"{REGION}:{ACCOUNT}"

    def table(name: str) -> Resource:
        return Resource("table", f"table {name}", f"arn:aws:dynamodb:{arn}:table/{name}")

    def secret(name: str) -> Resource:
        # Secrets Manager appends six random characters to a secret's ARN.
        return Resource(
            "secret", f"secret {name}", f"arn:aws:secretsmanager:{arn}:secret:{name}-AbC123"
        )

    def queue(name: str) -> Resource:
        return Resource("queue", f"queue {name}", f"arn:aws:sqs:{arn}:{name}")

    def topic(name: str) -> Resource:
        return Resource("topic", f"topic {name}", f"arn:aws:sns:{arn}:{name}")

    resources = {
        "ledger": table(names.ledger_table),
        "events": table(names.events_table),
        "time-index": table(names.time_index_table),
        "jobs": table(names.jobs_table),
        "token": secret(names.token_secret),
        "credentials": secret(names.credentials_secret),
        "push-key": secret(names.push_secret),
        "cursor-key": secret(names.cursor_key_secret),
        "ingest-queue": queue(names.ingest_queue),
        "ingest-dlq": queue(names.ingest_dlq),
        "replay-queue": queue(names.replay_queue),
        "replay-dlq": queue(names.replay_dlq),
        "quarantine": topic(names.quarantine_topic),
        "bus": Resource(
            "bus", f"bus {names.event_bus}", f"arn:aws:events:{arn}:event-bus/{names.event_bus}"
        ),
    }
    for consumer, topic_name in consumer_topics.items():
        resources[f"consumer:{consumer}"] = topic(topic_name)
    for function in FUNCTIONS:
        # As Chalice names them: the function behind the REST API after the app and stage.
        lambda_name = stage_prefix if function == "api_handler" else f"{stage_prefix}-{function}"
        group = f"/aws/lambda/{lambda_name}"
        resources[f"logs:{function}"] = Resource(
            "log-group", f"log group {group}", f"arn:aws:logs:{arn}:log-group:{group}:log-stream:x"
        )
    return resources


def expected_access(function: FunctionName, consumers: list[str]) -> dict[str, set[str]]:
    """What each function does, resource by resource; anything not named is denied."""
    consumer_topics = {f"consumer:{c}" for c in consumers}
    if function == "ingest":
        return {
            "ingest-queue": CONSUME,
            **{t: {"sns:Publish"} for t in consumer_topics},
            "quarantine": {"sns:Publish"},
            # Arrival marks (updates); claims, leases and high-water marks (conditional puts);
            # records read again while a batch waits for its turn (batched reads).
            "ledger": {"dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
            "events": {"dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"},
            "time-index": {"dynamodb:BatchWriteItem"},
            "logs:ingest": OWN_LOGS,
        }
    if function == "replay_worker":
        return {
            # A job out of time queues its own continuation.
            "replay-queue": CONSUME | SEND,
            **{t: {"sns:Publish"} for t in consumer_topics},
            "events": READ_EVENTS,
            "time-index": READ_EVENTS,
            "jobs": {"dynamodb:GetItem", "dynamodb:UpdateItem"},
            "logs:replay_worker": OWN_LOGS,
        }
    if function == "refresh_token":
        return {
            "credentials": {"secretsmanager:GetSecretValue"},
            # The first refresh creates the token secret; later ones replace its value.
            "token": {
                "secretsmanager:CreateSecret",
                "secretsmanager:GetSecretValue",
                "secretsmanager:PutSecretValue",
            },
            "logs:refresh_token": OWN_LOGS,
        }
    return {  # api_handler
        "events": READ_EVENTS,
        "time-index": READ_EVENTS,
        "jobs": {"dynamodb:GetItem", "dynamodb:PutItem"},
        "replay-queue": SEND,
        "ledger": {"dynamodb:PutItem"},  # POST /events: a signature seen before is refused
        "bus": {"events:PutEvents"},
        "push-key": {"secretsmanager:GetSecretValue"},
        "cursor-key": {"secretsmanager:GetSecretValue"},
        "logs:api_handler": OWN_LOGS,
    }


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str, case_sensitive: bool) -> bool:
    """IAM's wildcards: `*` any run of characters, `?` one character; nothing else special."""
    escaped = pattern.replace("[", "[[]")
    if not case_sensitive:
        return fnmatch.fnmatchcase(value.lower(), escaped.lower())
    return fnmatch.fnmatchcase(value, escaped)


def statements_of(packaged: Packaged, function: FunctionName) -> list[dict[str, Any]]:
    """The identity statements of the function's role in the packaged template."""
    physical = function_physical_name(packaged.settings, function)
    [properties] = [
        r["Properties"]
        for r in packaged.of_type("AWS::Serverless::Function").values()
        if r["Properties"]["FunctionName"] == physical
    ]
    assert "Policies" not in properties  # one role per function, below
    role_id = properties["Role"]["Fn::GetAtt"][0]
    role = packaged.template["Resources"][role_id]["Properties"]
    assert not role.get("ManagedPolicyArns"), role_id  # nothing granted out of sight
    attached = [
        r["Properties"]["PolicyDocument"]
        for r in packaged.template["Resources"].values()
        if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        and {"Ref": role_id} in r["Properties"].get("Roles", [])
    ]
    documents = [p["PolicyDocument"] for p in role.get("Policies", [])] + attached
    return [s for d in documents for s in _as_list(d["Statement"])]


def allowed(statements: list[dict[str, Any]], action: str, arn: str) -> bool:
    for statement in statements:
        assert statement["Effect"] == "Allow"  # no Deny to reason about
        assert "NotAction" not in statement and "NotResource" not in statement
        if any(_matches(a, action, False) for a in _as_list(statement["Action"])) and any(
            _matches(r, arn, True) for r in _as_list(statement["Resource"])
        ):
            return True
    return False


@pytest.fixture(scope="module", params=STAGES)
def packaged(request: pytest.FixtureRequest) -> Packaged:
    return packaged_stage(request.param)


def access_of(packaged: Packaged, function: FunctionName) -> Iterator[tuple[str, str, bool]]:
    """(resource key, action, allowed?) for every resource of the stage and every action."""
    settings = packaged.settings
    topics = {c: settings.consumer_topic_name(c) for c in settings.consumers}
    statements = statements_of(packaged, function)
    for key, resource in stage_resources(settings.names, topics, settings.prefix).items():
        for action in ACTIONS[resource.kind]:
            yield key, action, allowed(statements, action, resource.arn)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_is_allowed_exactly_what_it_does(
    packaged: Packaged, function: FunctionName
) -> None:
    expected = expected_access(function, list(packaged.settings.consumers))
    granted: dict[str, set[str]] = {}
    for key, action, is_allowed in access_of(packaged, function):
        if is_allowed:
            granted.setdefault(key, set()).add(action)
    assert granted == expected


def test_ingest_cannot_read_the_cxone_secrets_or_any_secret(packaged: Packaged) -> None:
    on_secrets = [
        (k, a, ok) for k, a, ok in access_of(packaged, "ingest") if a.startswith("secrets")
    ]
    assert {k for k, _, _ in on_secrets} == {"token", "credentials", "push-key", "cursor-key"}
    assert not [(k, a) for k, a, ok in on_secrets if ok]


def test_the_api_cannot_write_the_token_or_read_the_cxone_credentials(packaged: Packaged) -> None:
    access = {(k, a): ok for k, a, ok in access_of(packaged, "api_handler")}
    assert not access[("token", "secretsmanager:PutSecretValue")]
    assert not access[("token", "secretsmanager:CreateSecret")]
    assert not access[("token", "secretsmanager:GetSecretValue")]
    assert not access[("credentials", "secretsmanager:GetSecretValue")]
    # It serves unauthenticated POST /events: no publishing, no deleting.
    assert not any(ok for (k, a), ok in access.items() if a == "sns:Publish")
    assert not any(ok for (k, a), ok in access.items() if a.startswith("dynamodb:Delete"))


def test_the_token_refresher_cannot_publish_or_touch_any_table(packaged: Packaged) -> None:
    access = list(access_of(packaged, "refresh_token"))
    assert not [k for k, a, ok in access if ok and a.startswith(("sns:", "dynamodb:", "sqs:"))]


def test_only_x_rays_write_actions_are_granted_on_every_resource(packaged: Packaged) -> None:
    for function in FUNCTIONS:
        on_everything = {
            a
            for s in statements_of(packaged, function)
            if "*" in _as_list(s["Resource"])
            for a in _as_list(s["Action"])
        }
        assert on_everything == set(XRAY_WRITE_ACTIONS), function


def test_the_evaluator_reads_wildcards_as_iam_does() -> None:
    # The checks above are only as good as this matching: a policy on "…-cxone-token-??????"
    # must not cover a longer name, and a table's ARN must not cover another's.
    statement = {
        "Effect": "Allow",
        "Action": ["secretsmanager:GetSecretValue"],
        "Resource": ["arn:aws:secretsmanager:*:*:secret:app-token-??????"],
    }
    assert allowed(
        [statement],
        "secretsmanager:getsecretvalue",
        "arn:aws:secretsmanager:r:1:secret:app-token-AbC123",
    )
    assert not allowed(
        [statement],
        "secretsmanager:GetSecretValue",
        "arn:aws:secretsmanager:r:1:secret:app-token-old-AbC123",
    )
    assert not allowed(
        [statement],
        "secretsmanager:PutSecretValue",
        "arn:aws:secretsmanager:r:1:secret:app-token-AbC123",
    )

"""AWS rules that neither cfn-lint nor moto enforce, checked on a translated template.

Each check reads the CloudFormation template that `aws-sam-translator` makes of dist/sam.json
(the one CloudFormation would run) and returns what AWS would refuse, as messages naming the
resource; an empty list is a pass. Lambda refuses an SQS event source whose queue visibility
is below the function's timeout (AWS advises six times it), batching outside its limits and
an environment over 4 KB; IAM refuses oversized inline policies. A data-plane action on "*"
is not refused by AWS, but is what least privilege forbids.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from chalicelib.stack import XRAY_WRITE_ACTIONS
from chalicelib.timing import (
    SQS_BATCH_SIZE_MAX,
    SQS_BATCH_SIZE_WITHOUT_WINDOW_MAX,
    SQS_BATCHING_WINDOW_MAX_SECONDS,
    VISIBILITY_FACTOR,
)

LAMBDA_ENVIRONMENT_MAX_BYTES = 4 * 1024
# IAM quotas: all inline policies of one role together, and one managed policy, in characters
# of the policy without whitespace.
ROLE_INLINE_POLICIES_MAX_CHARS = 10_240
MANAGED_POLICY_MAX_CHARS = 6_144
FIFO_BATCH_SIZE_MAX = 10

Template = dict[str, Any]


def resources(template: Template, resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") == resource_type:
            yield logical_id, resource.get("Properties", {})


def _referenced_id(reference: Any) -> str | None:
    """The logical id behind a Ref or GetAtt."""
    if isinstance(reference, dict):
        if "Ref" in reference:
            return str(reference["Ref"])
        if "Fn::GetAtt" in reference:
            target = reference["Fn::GetAtt"]
            return str(target[0] if isinstance(target, list) else target.split(".")[0])
    return None


def _queue_for(template: Template, source_arn: Any) -> tuple[str, dict[str, Any]] | None:
    """The queue resource an event source ARN names (GetAtt, or a Sub'd ARN by name)."""
    queues = dict(resources(template, "AWS::SQS::Queue"))
    referenced = _referenced_id(source_arn)
    if referenced in queues:
        return referenced, queues[referenced]
    text = source_arn.get("Fn::Sub") if isinstance(source_arn, dict) else source_arn
    if isinstance(text, str):
        name = text.rsplit(":", 1)[-1]
        for logical_id, properties in queues.items():
            if properties.get("QueueName") == name:
                return logical_id, properties
    return None


def sqs_event_sources(
    template: Template,
) -> Iterator[tuple[str, dict[str, Any], str, dict[str, Any], str, dict[str, Any]]]:
    """(mapping id, mapping, function id, function, queue id, queue) of every SQS source."""
    functions = dict(resources(template, "AWS::Lambda::Function"))
    for mapping_id, mapping in resources(template, "AWS::Lambda::EventSourceMapping"):
        queue = _queue_for(template, mapping.get("EventSourceArn"))
        function_id = _referenced_id(mapping.get("FunctionName"))
        if queue is None or function_id not in functions:
            continue
        yield mapping_id, mapping, function_id, functions[function_id], queue[0], queue[1]


def check_visibility_covers_timeout(template: Template) -> list[str]:
    problems = []
    for _, _, function_id, function, queue_id, queue in sqs_event_sources(template):
        timeout = int(function.get("Timeout", 3))
        visibility = int(queue.get("VisibilityTimeout", 30))
        if visibility < timeout:
            problems.append(
                f"{queue_id}: VisibilityTimeout {visibility} s is less than the timeout of "
                f"{function_id} ({timeout} s): Lambda refuses the event source mapping"
            )
        elif visibility < VISIBILITY_FACTOR * timeout:
            problems.append(
                f"{queue_id}: VisibilityTimeout {visibility} s is under {VISIBILITY_FACTOR} x "
                f"the timeout of {function_id} ({timeout} s), AWS's advice for SQS sources"
            )
    return problems


def check_batching_within_limits(template: Template) -> list[str]:
    problems = []
    for mapping_id, mapping, _, _, _, queue in sqs_event_sources(template):
        size = int(mapping.get("BatchSize", 10))
        window = int(mapping.get("MaximumBatchingWindowInSeconds", 0))
        if queue.get("FifoQueue") in (True, "true"):
            if not 1 <= size <= FIFO_BATCH_SIZE_MAX or window:
                problems.append(
                    f"{mapping_id}: a FIFO queue allows a batch size of 1-{FIFO_BATCH_SIZE_MAX} "
                    f"and no batching window (got {size}, {window} s)"
                )
            continue
        if not 1 <= size <= SQS_BATCH_SIZE_MAX:
            problems.append(f"{mapping_id}: batch size {size} is outside 1-{SQS_BATCH_SIZE_MAX}")
        if size > SQS_BATCH_SIZE_WITHOUT_WINDOW_MAX and window < 1:
            problems.append(
                f"{mapping_id}: a batch size over {SQS_BATCH_SIZE_WITHOUT_WINDOW_MAX} needs a "
                "batching window of at least 1 s"
            )
        if not 0 <= window <= SQS_BATCHING_WINDOW_MAX_SECONDS:
            problems.append(
                f"{mapping_id}: batching window {window} s is outside "
                f"0-{SQS_BATCHING_WINDOW_MAX_SECONDS} s"
            )
    return problems


def environment_bytes(variables: dict[str, Any]) -> int:
    """Lambda's measure: the keys and values together, in bytes."""
    return sum(
        len(str(k).encode()) + len(json.dumps(v).strip('"').encode()) for k, v in variables.items()
    )


def check_environment_size(template: Template) -> list[str]:
    problems = []
    for function_id, function in resources(template, "AWS::Lambda::Function"):
        variables = function.get("Environment", {}).get("Variables", {})
        size = environment_bytes(variables)
        if size > LAMBDA_ENVIRONMENT_MAX_BYTES:
            problems.append(
                f"{function_id}: environment is {size} bytes; Lambda allows "
                f"{LAMBDA_ENVIRONMENT_MAX_BYTES}"
            )
    return problems


def policy_chars(document: Any) -> int:
    return len(json.dumps(document, separators=(",", ":")))


def check_policy_sizes(template: Template) -> list[str]:
    problems = []
    for role_id, role in resources(template, "AWS::IAM::Role"):
        total = sum(policy_chars(p["PolicyDocument"]) for p in role.get("Policies", []))
        if total > ROLE_INLINE_POLICIES_MAX_CHARS:
            problems.append(
                f"{role_id}: inline policies are {total} characters; IAM allows "
                f"{ROLE_INLINE_POLICIES_MAX_CHARS} per role"
            )
    for policy_id, policy in resources(template, "AWS::IAM::ManagedPolicy"):
        size = policy_chars(policy["PolicyDocument"])
        if size > MANAGED_POLICY_MAX_CHARS:
            problems.append(
                f"{policy_id}: {size} characters; IAM allows {MANAGED_POLICY_MAX_CHARS}"
            )
    return problems


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def identity_statements(template: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Allow statement of the roles' and policies' identity documents."""
    documents: list[tuple[str, Any]] = []
    for role_id, role in resources(template, "AWS::IAM::Role"):
        documents += [(role_id, p["PolicyDocument"]) for p in role.get("Policies", [])]
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        documents += [(i, p["PolicyDocument"]) for i, p in resources(template, kind)]
    for owner, document in documents:
        for statement in _as_list(document.get("Statement", [])):
            if statement.get("Effect") == "Allow":
                yield owner, statement


def check_no_data_plane_action_on_any_resource(template: Template) -> list[str]:
    problems = []
    for owner, statement in identity_statements(template):
        actions = set(_as_list(statement.get("Action", [])))
        wildcard_actions = {a for a in actions if a == "*" or a.endswith(":*")}
        if wildcard_actions:
            problems.append(f"{owner}: grants every action of {sorted(wildcard_actions)}")
        if "*" in _as_list(statement.get("Resource", [])):
            data_plane = actions - set(XRAY_WRITE_ACTIONS)
            if data_plane:
                problems.append(f"{owner}: grants {sorted(data_plane)} on every resource")
    return problems


CHECKS = (
    check_visibility_covers_timeout,
    check_batching_within_limits,
    check_environment_size,
    check_policy_sizes,
    check_no_data_plane_action_on_any_resource,
)


def deploy_problems(template: Template) -> list[str]:
    """Everything AWS would refuse (or least privilege forbids) in a translated template."""
    return [problem for check in CHECKS for problem in check(template)]

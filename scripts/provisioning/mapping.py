"""Provisioning step `event-source-mapping`: partial batch responses for the ingest function.

Chalice creates the ingest function's SQS event source mapping but cannot turn on
`ReportBatchItemFailures` (aws/chalice#2029). Without it Lambda ignores the handler's
`batchItemFailures` and retries or deletes whole batches, so this step runs after every
`chalice deploy`: it finds the mapping from the ingest queue to the function, adds the response
type, and reads the mapping back to prove it took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.aws import error_code
from chalicelib.config import Settings
from scripts.provisioning.actions import Action

REPORT_BATCH_ITEM_FAILURES = "ReportBatchItemFailures"
INGEST_FUNCTION = "ingest"  # the handler's name in app.py
# A mapping in one of these states refuses updates (ResourceInUseException) until it settles,
# which it does within seconds of `chalice deploy`.
_TRANSITIONAL_STATES = ("Creating", "Enabling", "Disabling", "Updating")
SETTLE_TIMEOUT_SECONDS = 60.0
SETTLE_POLL_SECONDS = 2.0


class MappingError(RuntimeError):
    """The mapping is missing or could not be changed; the message says what to do."""


def ingest_function_name(settings: Settings) -> str:
    """The name Chalice gives the deployed ingest function: <app>-<stage>-<handler>."""
    return f"{settings.app_name}-{settings.stage}-{INGEST_FUNCTION}"


def function_exists(lambda_client: Any, function_name: str) -> bool:
    try:
        lambda_client.get_function(FunctionName=function_name)
        return True
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return False
        raise


def find_mappings(lambda_client: Any, function_name: str, queue_arn: str) -> list[dict[str, Any]]:
    """The function's event source mappings whose source is `queue_arn`."""
    found: list[dict[str, Any]] = []
    paginator = lambda_client.get_paginator("list_event_source_mappings")
    for page in paginator.paginate(FunctionName=function_name, EventSourceArn=queue_arn):
        found += page.get("EventSourceMappings", [])
    return found


def response_types(mapping: dict[str, Any]) -> list[str]:
    return list(mapping.get("FunctionResponseTypes") or [])


def _settled(
    lambda_client: Any,
    uuid: str,
    sleep: Callable[[float], None],
    timeout_seconds: float,
) -> dict[str, Any]:
    waited = 0.0
    while True:
        mapping = lambda_client.get_event_source_mapping(UUID=uuid)
        if mapping.get("State") not in _TRANSITIONAL_STATES:
            return mapping
        if waited >= timeout_seconds:
            raise MappingError(
                f"event source mapping {uuid} is still {mapping.get('State')} after "
                f"{timeout_seconds:g} s; re-run this step once it settles"
            )
        sleep(SETTLE_POLL_SECONDS)
        waited += SETTLE_POLL_SECONDS


def ensure_report_batch_item_failures(
    lambda_client: Any,
    function_name: str,
    queue_arn: str,
    dry_run: bool,
    sleep: Callable[[float], None] = time.sleep,
    settle_timeout_seconds: float = SETTLE_TIMEOUT_SECONDS,
) -> list[Action]:
    """Every mapping from `queue_arn` to the function reports batch item failures."""
    mappings = find_mappings(lambda_client, function_name, queue_arn)
    if not mappings:
        raise MappingError(
            f"function {function_name} has no event source mapping from {queue_arn}: run "
            "`chalice deploy` for this stage first (it creates the mapping), then re-run this step"
        )
    actions = []
    for mapping in mappings:
        uuid = mapping["UUID"]
        name = f"{function_name} <- {queue_arn.rsplit(':', 1)[-1]} ({uuid})"
        current = response_types(mapping)
        if REPORT_BATCH_ITEM_FAILURES in current:
            actions.append(
                Action("event-source-mapping", name, "present", "ReportBatchItemFailures")
            )
            continue
        if dry_run:
            actions.append(
                Action("event-source-mapping", name, "would update", "add ReportBatchItemFailures")
            )
            continue
        _settled(lambda_client, uuid, sleep, settle_timeout_seconds)
        wanted = sorted({*current, REPORT_BATCH_ITEM_FAILURES})
        lambda_client.update_event_source_mapping(UUID=uuid, FunctionResponseTypes=wanted)
        read_back = _settled(lambda_client, uuid, sleep, settle_timeout_seconds)
        if REPORT_BATCH_ITEM_FAILURES not in response_types(read_back):
            raise MappingError(
                f"event source mapping {uuid} does not report batch item failures after the "
                f"update (it reads back {response_types(read_back)}); check that nothing else "
                "(another deploy) overwrote it, then re-run this step"
            )
        actions.append(
            Action("event-source-mapping", name, "updated", "ReportBatchItemFailures (verified)")
        )
    return actions

"""Every function's operational log lines carry its Lambda context, and never the event.

app.py's handlers are invoked as Lambda invokes them (the handler with the event and a
context object), on a stage that is not provisioned: each then logs the dependency it could
not reach, which is the line an operator looks up by its request id. The API is invoked
through chalice.test.Client, which makes a Lambda context per request as API Gateway does.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.errors import DependencyUnavailable
from chalicelib.runtime import reset_runtime
from chalicelib.telemetry import AUDIT_RECORD_ATTRIBUTE, logger
from scripts.local.runner import LocalContext, scheduled_event

FIXTURE = Path(__file__).parents[1] / "fixtures" / "cxone" / "stage-changed.json"
# In the event, so that a line holding any of the event would show it.
PAYLOAD_MARKER = "payload-marker-" + uuid.uuid4().hex


@pytest.fixture
def bare_app(relay_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """app.py on a stage with no resources: every dependency call fails."""
    monkeypatch.setenv("RELAY_BATCH_FAILURE_MODE", "report")
    reset_runtime()
    import app as app_module

    try:
        yield app_module
    finally:
        reset_runtime()


def log_lines(action: Callable[[], Any]) -> list[dict[str, Any]]:
    """The JSON lines the relay's logger writes while `action` runs."""
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)
    try:
        action()
    finally:
        logger.registered_handler.setStream(previous)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def operational(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Audit lines are compact by design (ids of the decision only, see telemetry).
    return [line for line in lines if AUDIT_RECORD_ATTRIBUTE not in line]


def assert_in_context(lines: list[dict[str, Any]], context: LocalContext) -> None:
    assert lines, "the invocation logged nothing to find"
    for line in lines:
        assert line["function_request_id"] == context.aws_request_id
        assert line["function_name"] == context.function_name
        assert line["function_arn"] == context.invoked_function_arn
        assert line["function_memory_size"] == context.memory_limit_in_mb
        assert isinstance(line["cold_start"], bool)
        assert PAYLOAD_MARKER not in json.dumps(line)


def sqs_event(body: str, queue_arn: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "receipt-" + uuid.uuid4().hex,
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764406801000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
        ]
    }


def test_ingest_lines_carry_the_invocation_and_not_the_event(bare_app: ModuleType) -> None:
    event = json.loads(FIXTURE.read_text())
    event["id"] = str(uuid.uuid4())
    event["detail"]["metadata"] = {"note": PAYLOAD_MARKER}
    names = bare_app.NAMES
    queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{names.ingest_queue}"
    context = LocalContext("ingest", 30)
    handler = bare_app.app.handler_map["ingest"]
    responses: list[Any] = []

    lines = log_lines(
        lambda: responses.append(handler(sqs_event(json.dumps(event), queue_arn), context))
    )

    # The ledger does not exist: the record is retried, and the line saying so is findable.
    assert len(responses[0]["batchItemFailures"]) == 1
    assert_in_context(operational(lines), context)
    assert all(PAYLOAD_MARKER not in json.dumps(line) for line in lines)


def test_refresh_token_lines_carry_the_invocation(bare_app: ModuleType) -> None:
    context = LocalContext("refresh_token", 30)
    handler = bare_app.app.handler_map["refresh_token"]

    def refresh() -> None:
        # No credentials secret and no token: the refresh fails with no valid token left.
        with pytest.raises(DependencyUnavailable):
            handler(scheduled_event("refresh_token", "us-east-1"), context)

    lines = log_lines(refresh)

    assert any(line["message"] == "CXone token refresh failed" for line in lines)
    assert_in_context(operational(lines), context)


def test_replay_worker_lines_carry_the_invocation(bare_app: ModuleType) -> None:
    queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{bare_app.NAMES.replay_queue}"
    context = LocalContext("replay_worker", 300)
    handler = bare_app.app.handler_map["replay_worker"]

    lines = log_lines(lambda: handler(sqs_event(PAYLOAD_MARKER, queue_arn), context))

    # That line alone: no "event received" line (log_event stays off).
    assert [line["message"] for line in lines] == [
        "replay worker: message is not a job message; dropped"
    ]
    assert_in_context(lines, context)


def test_each_api_request_logs_under_its_own_request_id(bare_app: ModuleType) -> None:
    job_path = f"/replay/jobs/{uuid.uuid4().hex}"
    with Client(bare_app.app, stage_name="dev") as client:

        def two_requests() -> None:
            for _ in range(2):
                # The jobs table does not exist: a 503, and a line saying which route failed.
                assert client.http.get(job_path).status_code == 503

        lines = log_lines(two_requests)

    failures = [line for line in lines if line["message"] == "API dependency failed"]
    assert len(failures) == 2
    request_ids = {line["function_request_id"] for line in failures}
    assert len(request_ids) == 2 and all(request_ids)
    assert {line["function_name"] for line in failures} == {"api_handler"}

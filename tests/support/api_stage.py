"""Security suite: what the API shows a caller, what it refuses, and what never reaches a log.

Where the rest lives: that the packaged template puts every route but the signed POST /events
behind IAM (SigV4) is tests/integration/test_package.py::test_every_route_but_push_requires_sigv4;
that app.py's blueprint routes carry the IAM authorizer is
tests/integration/test_replay_api.py::test_every_route_is_behind_iam_in_every_app_the_blueprint_joins;
the signature, replay and secret-rotation rules of POST /events are tests/integration/test_push.py.

Shared here: `ApiStage`, one provisioned stage per module served through chalice.test.Client
over app.py's own app (so every route is the deployed one; the test client ignores IAM), with
a push signing secret and a few interactions delivered through the real pipeline; and
`assert_safe`, the check every fuzzed response must pass.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from chalice.test import Client

from chalicelib.ingest.handler import handle_ingest
from chalicelib.runtime import Runtime
from tests.support.helpers import sqs_lambda_event
from tests.support.reliability import ACCOUNT_ID, REGION, lifecycle, provisioned_stage, unique

# What a response must never show: a Python stack trace, and the store's internal key names.
TRACE_MARKERS = ("Traceback", 'File "')
INTERNAL_NAMES = ("pk", "sk", "time_sort", "time_bucket")
_INTERNAL_WORD = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(INTERNAL_NAMES) + r")(?![A-Za-z0-9_])")


@dataclass
class ApiStage:
    runtime: Runtime
    client: Client
    push_secret: str
    interactions: list[str]  # delivered through the pipeline: the timelines are not empty
    day: str  # the day their events occurred, "2026-11-29"


@contextmanager
def api_stage() -> Iterator[ApiStage]:
    """A provisioned stage with stored events, a push secret and a client over app.py's app.

    The `aws_endpoint` fixture must be active."""
    import app as app_module

    with provisioned_stage() as runtime:
        push_secret = secrets.token_hex(32)
        # Provisioning created both generated secrets with random values: the cursor signing
        # key stays as it is (cursors are signed with it), the push secret gets a known value
        # through PutSecretValue, a new AWSCURRENT version, as a rotation makes one.
        runtime.secretsmanager.put_secret_value(
            SecretId=runtime.settings.names.push_secret, SecretString=push_secret
        )
        prefix = unique("api")
        interactions = [f"{prefix}-{n}" for n in range(3)]
        events = [event for i in interactions for event in lifecycle(i, 5)]
        arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{runtime.settings.names.ingest_queue}"
        response = handle_ingest(sqs_lambda_event(events, arn), None, runtime)
        assert response == {"batchItemFailures": []}
        # Stage "local" has no environment variables of its own in .chalice/config.json, so
        # the client serves the app with this stage's environment.
        with Client(app_module.app, stage_name="local") as client:
            yield ApiStage(runtime, client, push_secret, interactions, "2026-11-29")


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


def assert_safe(response: Any, sent: str) -> None:
    """No server error, no stack trace, no internal name; `sent` is everything the request
    carried (a value echoed back in an error message does not count against the response)."""
    text = response.body.decode("utf-8", errors="replace")
    assert response.status_code < 500, f"{response.status_code}: {text[:500]}"
    for marker in TRACE_MARKERS:
        assert marker not in text or marker in sent, f"stack trace in the response: {text[:500]}"
    try:
        document = json.loads(text) if text else None
    except ValueError:
        document = None
    leaked = set(_keys(document)) & set(INTERNAL_NAMES)
    assert not leaked, f"internal keys {leaked} in a response: {text[:500]}"
    if response.status_code >= 400:
        names = {m.group(1) for m in _INTERNAL_WORD.finditer(text)}
        shown = {name for name in names if name not in sent}
        assert not shown, f"internal names {shown} in an error: {text[:500]}"

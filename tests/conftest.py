"""Shared fixtures: one real moto server over HTTP for the whole session.

Each test gets its own stage name, so the resources one test provisions never collide with
another's; nothing is mocked in-process.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from typing import cast
from unittest import mock

import boto3
import pytest

# Imported first, as app.py does (through chalicelib.tracing): it configures the one Powertools
# logger with the audit formatter. A Logger made earlier under the same service name (the
# cxone package still makes its own) would configure it first, and audit lines would lose
# their compact form for the rest of the session, depending on which test module is
# collected first.
import chalicelib.telemetry  # noqa: F401
from scripts.local.aws_server import LocalAwsServer
from tests.support.environment import ACCOUNT_ID, AWS_ENV, REGION, free_port

pytest_plugins = ["tests.support.log_guard"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The suites marked slow run first, longest first (`slow(seconds=…)`: about how long the
    file takes on its own; otherwise collection order): `make test` runs one worker per core,
    and a long file started last keeps one worker busy after the rest is done."""

    def seconds_first(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return 0.0 if marker is None else -float(marker.kwargs.get("seconds", 1))

    items.sort(key=seconds_first)


@pytest.fixture(scope="session", autouse=True)
def lambda_contexts_with_the_functions_timeout() -> Iterator[None]:
    """chalice.test's Lambda client gives every invocation 3 s (its LambdaContext's default),
    where Lambda gives the function its configured timeout; with 3 s, a test's ingest batch
    ran out of its deadline on a loaded machine. Give it the stage's timeout (timing.py)."""
    import chalice.test

    from chalicelib.timing import FunctionName, function_timeout_seconds

    original = chalice.test.LambdaContext

    def with_timeout(function_name: str, memory_size: int, **kwargs: object) -> object:
        stage = os.environ.get("RELAY_STAGE", "dev")
        name = cast(FunctionName, function_name)
        timeout_ms = function_timeout_seconds(name, stage) * 1000
        return original(function_name, memory_size, max_runtime_ms=timeout_ms)

    with mock.patch.object(chalice.test, "LambdaContext", with_timeout):
        yield


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    """Start moto's server on a free port and point every AWS client at it."""
    # The moto server logs every request through werkzeug; keep test output readable.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = LocalAwsServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }
    )
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def stage_name() -> str:
    """A stage name unique to the test, so its resources are its own."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def relay_env(aws_endpoint: str, stage_name: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Environment of a relay stage on the moto server (not yet provisioned)."""
    env = {
        "RELAY_APP": "relay",
        "RELAY_STAGE": stage_name,
        "RELAY_ACCOUNT_ID": ACCOUNT_ID,
        "AWS_REGION": REGION,
        "RELAY_BACKOFF_BASE_SECONDS": "0",
        "RELAY_BACKOFF_MAX_SECONDS": "0",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def boto_session(aws_endpoint: str) -> boto3.Session:
    return boto3.Session(region_name=REGION)


@pytest.fixture
def provisioned(relay_env: dict, boto_session: boto3.Session):
    """A fully provisioned stage on the moto server; yields its Runtime (fresh per test)."""
    from chalicelib.config import load_settings
    from chalicelib.runtime import get_runtime, reset_runtime
    from chalicelib.stack import stack_spec
    from scripts.provisioning.infra import Clients, provision_infrastructure

    settings = load_settings()
    provision_infrastructure(Clients.from_session(boto_session), stack_spec(settings), False)
    reset_runtime()
    try:
        yield get_runtime()
    finally:
        reset_runtime()

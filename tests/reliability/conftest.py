"""Fixtures shared by the reliability suites: one provisioned stage per module."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chalicelib.runtime import Runtime
from tests.support.reliability import Stage, opened, provisioned_stage


@pytest.fixture(scope="module")
def shared_runtime(aws_endpoint: str) -> Iterator[Runtime]:
    """One stage for the module; each test uses interactions of its own. Its mapping reports
    batch item failures (as provisioning turns it on) and the tests read the function's
    responses, so the stage runs in "report" mode; tests/reliability/
    test_no_batch_item_failures.py covers the default on a mapping without it."""
    with provisioned_stage(RELAY_BATCH_FAILURE_MODE="report") as runtime:
        yield runtime


@pytest.fixture
def stage(shared_runtime: Runtime) -> Iterator[Stage]:
    with opened(shared_runtime) as stage:
        yield stage


@pytest.fixture
def ingest(shared_runtime: Runtime) -> Callable[[dict[str, Any], Any], Any]:
    """The deployed function: app.py's `ingest`, as Lambda calls it."""
    import app as app_module

    return app_module.app.handler_map["ingest"]

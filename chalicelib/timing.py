"""The single table of function timeouts, and every duration derived from them.

A queue read by a function must keep a message invisible for at least six times that
function's timeout (AWS's advice for SQS event sources, and Lambda refuses a mapping whose
queue visibility is below the function timeout); the stuck-claim age and the lease follow
from the ingest timeout. Keeping them here, and deriving the rest, is what stops a timeout
changed in one place from breaking another (`.chalice/config.json` must agree: a test checks).
"""

from __future__ import annotations

from typing import Literal

FunctionName = Literal["ingest", "replay_worker", "refresh_token", "api_handler"]

# Per stage and function: the Lambda timeout in seconds. "local" is the local stack's stage:
# short, so that retries take seconds.
FUNCTION_TIMEOUT_SECONDS: dict[str, dict[FunctionName, int]] = {
    "local": {"ingest": 10, "replay_worker": 60, "refresh_token": 10, "api_handler": 29},
    "dev": {"ingest": 30, "replay_worker": 300, "refresh_token": 30, "api_handler": 29},
    "prod": {"ingest": 30, "replay_worker": 300, "refresh_token": 30, "api_handler": 29},
}
# Stages not named above (a test's or a user's own) run with dev's timeouts.
DEFAULT_TIMING_STAGE = "dev"

VISIBILITY_FACTOR = 6
# Ordering waits (a newer event waiting on an older one) also count as receives, and each
# retry backs off (2 s, 4 s, … 60 s): 12 receives is several minutes before the DLQ.
MAX_RECEIVE_COUNT = 12
RETENTION_SECONDS = 14 * 24 * 3600  # SQS maximum: a DLQ keeps what it holds for two weeks


def function_timeout_seconds(function: FunctionName, stage: str) -> int:
    table = FUNCTION_TIMEOUT_SECONDS.get(stage, FUNCTION_TIMEOUT_SECONDS[DEFAULT_TIMING_STAGE])
    return table[function]


def ingest_timeout_seconds(stage: str) -> int:
    return function_timeout_seconds("ingest", stage)


def queue_visibility_seconds(reader: FunctionName, stage: str) -> int:
    """Visibility timeout of a queue that `reader` consumes."""
    return VISIBILITY_FACTOR * function_timeout_seconds(reader, stage)

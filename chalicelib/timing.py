"""The single table of function settings, and every duration derived from them.

A queue read by a function must keep a message invisible for at least six times that
function's timeout (AWS's advice for SQS event sources, and Lambda refuses a mapping whose
queue visibility is below the function timeout); the stuck-claim age and the lease follow
from the ingest timeout. Keeping timeouts, memory, concurrency and batch settings here, and
deriving the rest, is what stops a value changed in one place from breaking another:
`.chalice/config.json`'s `lambda_functions` are generated from this table
(`python -m scripts.package --write-config`) and packaging refuses a config that differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FunctionName = Literal["ingest", "replay_worker", "refresh_token", "api_handler"]
FUNCTIONS: tuple[FunctionName, ...] = ("ingest", "replay_worker", "refresh_token", "api_handler")

# Per stage and function: the Lambda timeout in seconds. "local" is the local stack's stage:
# short, so that retries take seconds.
FUNCTION_TIMEOUT_SECONDS: dict[str, dict[FunctionName, int]] = {
    "local": {"ingest": 10, "replay_worker": 60, "refresh_token": 10, "api_handler": 29},
    "dev": {"ingest": 30, "replay_worker": 300, "refresh_token": 30, "api_handler": 29},
    "prod": {"ingest": 30, "replay_worker": 300, "refresh_token": 30, "api_handler": 29},
}
# Stages not named above (a test's or a user's own) run with dev's timeouts.
DEFAULT_TIMING_STAGE = "dev"

FUNCTION_MEMORY_MB: dict[FunctionName, int] = {
    "ingest": 512,
    "replay_worker": 512,
    "refresh_token": 256,
    "api_handler": 512,
}
# Reserved concurrency: ingest's caps the write rate on the tables (and so the bill) whatever
# the backlog; the API's keeps a flood on the public POST /events from starving the account's
# other functions. The schedule and the one-job-at-a-time worker need none.
RESERVED_CONCURRENCY: dict[str, dict[FunctionName, int]] = {
    "dev": {"ingest": 10, "api_handler": 10},
    "prod": {"ingest": 50, "api_handler": 50},
}


@dataclass(frozen=True)
class BatchSettings:
    """An SQS event source mapping's batching, within Lambda's limits for a standard queue."""

    batch_size: int
    maximum_batching_window_in_seconds: int


# Lambda's limits for a standard queue: batch size 1-10000, and above 10 a batching window of
# at least 1 s; the window is at most 300 s. (A FIFO queue allows at most 10, no window.)
SQS_BATCH_SIZE_MAX = 10_000
SQS_BATCH_SIZE_WITHOUT_WINDOW_MAX = 10
SQS_BATCHING_WINDOW_MAX_SECONDS = 300
EVENT_SOURCES: dict[FunctionName, BatchSettings] = {
    "ingest": BatchSettings(batch_size=10, maximum_batching_window_in_seconds=1),
    # One job per invocation: a job can take the whole timeout.
    "replay_worker": BatchSettings(batch_size=1, maximum_batching_window_in_seconds=0),
}

VISIBILITY_FACTOR = 6
# Ordering waits (a newer event waiting for an older one) that outlast a batch's turn wait
# (RELAY_TURN_WAIT_MS, in the invocation) count as receives too: a newer event waits for every
# older one that reached the relay first, through a crashed holder's lease, a crashed batch's
# marks or an older event retrying for a consumer that is down (newer events wait only at that
# consumer). Each retry backs off (2 s, 4 s, … 60 s): 30 receives are about 25 minutes before
# the DLQ (12 were 7, and shuffled streams dead-lettered records that were only waiting).
MAX_RECEIVE_COUNT = 30
RETENTION_SECONDS = 14 * 24 * 3600  # SQS maximum: a DLQ keeps what it holds for two weeks
# The longest a record can come back after it was first sent: it may wait out the DLQ's
# retention (counted from its first enqueue), then `scripts.dlq redrive` re-sends it as a new
# message that may wait out the ingest queue's retention. An interaction record (high-water
# mark, in-flight claims) must outlive that, or a re-driven event finds no mark and goes out
# `late: false` after newer ones.
LONGEST_RECORD_LIFE_SECONDS = RETENTION_SECONDS + RETENTION_SECONDS
# CloudWatch Logs retention of the functions' and the API's log groups, per stage.
LOG_RETENTION_DAYS: dict[str, int] = {"prod": 90}
DEFAULT_LOG_RETENTION_DAYS = 14


def function_timeout_seconds(function: FunctionName, stage: str) -> int:
    table = FUNCTION_TIMEOUT_SECONDS.get(stage, FUNCTION_TIMEOUT_SECONDS[DEFAULT_TIMING_STAGE])
    return table[function]


def ingest_timeout_seconds(stage: str) -> int:
    return function_timeout_seconds("ingest", stage)


def queue_visibility_seconds(reader: FunctionName, stage: str) -> int:
    """Visibility timeout of a queue that `reader` consumes."""
    return VISIBILITY_FACTOR * function_timeout_seconds(reader, stage)


def reserved_concurrency(function: FunctionName, stage: str) -> int | None:
    return RESERVED_CONCURRENCY.get(stage, {}).get(function)


def log_retention_days(stage: str) -> int:
    return LOG_RETENTION_DAYS.get(stage, DEFAULT_LOG_RETENTION_DAYS)

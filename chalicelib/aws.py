"""What every AWS adapter shares: the error code of a failed call, whether retrying can fix
it, the one backoff function, DynamoDB batch reads and writes that retry what the service left
unprocessed, and a queue-URL cache.

Adapters (ledger, fan-out, store, replay, push, tokens) call these and keep only their own
decisions; nothing else in the project inspects a botocore error.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import DependencyUnavailable

AwsFailure = (ClientError, BotoCoreError)

# Codes that say the request itself is refused: the same request fails the same way every
# time, so it is poison for the record that caused it, never a reason to retry its batch.
# (Throttling, 5xx, timeouts and ConditionalCheckFailed are not here: they are retried or
# decided by the caller.)
NON_RETRYABLE_CODES = frozenset(
    {
        "ValidationException",
        "SerializationException",
        "InvalidParameter",
        "InvalidParameterException",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "ParameterValueInvalid",
        "InvalidMessageContents",
        "InvalidAttributeValue",
        "InvalidAttributeName",
        "MessageTooLong",
        "BatchRequestTooLong",
        "KMSInvalidStateException",
    }
)

# DynamoDB's per-request limits.
MAX_BATCH_GET_KEYS = 100
MAX_BATCH_WRITE_ITEMS = 25
BATCH_ATTEMPTS = 5


def error_code(error: BaseException) -> str:
    """The AWS error code of a failed call; for a failure with no response (connection lost,
    read timeout once botocore's own retries ran out) the exception's class name."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code") or "Unknown")
    return type(error).__name__


def is_retryable(error: BaseException) -> bool:
    """False when retrying the same request cannot succeed (see NON_RETRYABLE_CODES)."""
    return not (isinstance(error, ClientError) and error_code(error) in NON_RETRYABLE_CODES)


def compute_backoff(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: Callable[[], float] | None = random.random,
) -> float:
    """Seconds to wait before retry `attempt` (0-based): `base * 2**attempt`, at most `cap`,
    with half jitter (between half and all of it) unless `jitter` is None."""
    delay: float = min(cap, base * float(2 ** max(0, attempt)))
    if jitter is None:
        return delay
    return delay * (0.5 + jitter() / 2)


def sleep_before_retry(attempt: int) -> None:
    time.sleep(compute_backoff(attempt, base=0.025, cap=1.0))


def chunked(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def batch_get(
    dynamodb: Any, request_items: Mapping[str, Mapping[str, Any]], what: str
) -> dict[str, list[dict[str, Any]]]:
    """BatchGetItem of at most 100 keys, retrying unprocessed keys with backoff.

    `what` names the read in the error. Raises DependencyUnavailable when the call fails or
    keys stay unprocessed after BATCH_ATTEMPTS.
    """
    found: dict[str, list[dict[str, Any]]] = {}
    request: Mapping[str, Any] = request_items
    for attempt in range(BATCH_ATTEMPTS):
        try:
            response = dynamodb.batch_get_item(RequestItems=request)
        except AwsFailure as error:
            raise DependencyUnavailable(f"{what} failed: {error_code(error)}") from error
        for table, items in response.get("Responses", {}).items():
            found.setdefault(table, []).extend(items)
        request = response.get("UnprocessedKeys") or {}
        if not request:
            return found
        sleep_before_retry(attempt)
    raise DependencyUnavailable(f"{what}: keys still unprocessed after {BATCH_ATTEMPTS} attempts")


def batch_write(
    dynamodb: Any, request_items: Mapping[str, list[dict[str, Any]]], what: str
) -> None:
    """BatchWriteItem of at most 25 items, retrying failed calls and unprocessed items.

    Raises DependencyUnavailable once BATCH_ATTEMPTS are spent.
    """
    request: Mapping[str, Any] = request_items
    for attempt in range(BATCH_ATTEMPTS):
        try:
            response = dynamodb.batch_write_item(RequestItems=request)
        except AwsFailure as error:
            if attempt == BATCH_ATTEMPTS - 1 or not is_retryable(error):
                raise DependencyUnavailable(f"{what} failed: {error_code(error)}") from error
            sleep_before_retry(attempt)
            continue
        request = response.get("UnprocessedItems") or {}
        if not request:
            return
        sleep_before_retry(attempt)
    raise DependencyUnavailable(f"{what}: items still unprocessed after {BATCH_ATTEMPTS} attempts")


class QueueUrls:
    """Queue URLs by name (or by ARN), resolved once per process: GetQueueUrl is a billed
    request, and a queue's URL never changes."""

    def __init__(self) -> None:
        self._urls: dict[tuple[str, str | None], str] = {}
        self._lock = threading.Lock()

    def url(self, sqs: Any, name: str, owner_account: str | None = None) -> str:
        key = (name, owner_account)
        with self._lock:
            cached = self._urls.get(key)
        if cached is not None:
            return cached
        arguments = {"QueueName": name}
        if owner_account:
            arguments["QueueOwnerAWSAccountId"] = owner_account
        url = str(sqs.get_queue_url(**arguments)["QueueUrl"])
        with self._lock:
            self._urls[key] = url
        return url

    def url_of_arn(self, sqs: Any, queue_arn: str) -> str:
        *_, account, name = queue_arn.split(":")
        return self.url(sqs, name, account)

    def clear(self) -> None:
        with self._lock:
            self._urls.clear()


QUEUE_URLS = QueueUrls()

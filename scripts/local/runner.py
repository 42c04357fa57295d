"""Lambda's SQS event source mapping and EventBridge schedules, emulated for the local stack.

`SqsPoller` feeds a queue to a Chalice handler the way the managed event source mapping does:
long polling, batches up to the handler's batch size gathered within its batching window, a
Lambda-shaped context whose remaining time counts down, `batchItemFailures` honoured (only
successes are deleted; failures reappear after their visibility timeout and the queue's
redrive policy moves poison records to the DLQ), an exception or a timeout meaning the whole
batch failed, and several batches in flight at once (one worker thread each).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from chalice.app import Rate

from chalicelib.telemetry import logger

Handler = Callable[[dict[str, Any], Any], Any]


class LocalContext:
    """The parts of Lambda's context object that handlers use."""

    def __init__(self, function_name: str, timeout_seconds: float, memory_mb: int = 512) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.aws_request_id = str(uuid.uuid4())
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        )
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = self.aws_request_id
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One SQS message as Lambda hands it to the function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def failed_ids(response: Any) -> set[str] | None:
    """Ids the handler reported failed; None when the response is not a partial-batch one."""
    if not isinstance(response, dict) or "batchItemFailures" not in response:
        return None
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}


@dataclass
class PollerStats:
    batches: int = 0
    records: int = 0
    deleted: int = 0
    reported_failures: int = 0
    failed_batches: int = 0  # raised or timed out: nothing deleted
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, int]:
        with self.lock:
            return {
                name: getattr(self, name)
                for name in ("batches", "records", "deleted", "reported_failures", "failed_batches")
            }

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class SqsPoller:
    def __init__(
        self,
        sqs: Any,
        *,
        name: str,
        queue_url: str,
        queue_arn: str,
        region: str,
        handler: Handler,
        batch_size: int,
        batching_window_seconds: float,
        timeout_seconds: float,
        concurrency: int = 3,
        report_batch_item_failures: bool = True,
    ) -> None:
        self.sqs = sqs
        self.name = name
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.region = region
        self.handler = handler
        self.batch_size = batch_size
        self.window = batching_window_seconds
        self.timeout = timeout_seconds
        self.concurrency = concurrency
        self.report_batch_item_failures = report_batch_item_failures
        self.stats = PollerStats()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._work, name=f"{self.name}-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self.receive_batch()
                if messages:
                    self.invoke(messages)
            except Exception as error:  # keep polling, as the managed mapping does
                logger.warning(
                    "poller error", extra={"poller": self.name, "error": type(error).__name__}
                )
                self._stop.wait(1)

    def receive_batch(self) -> list[dict[str, Any]]:
        """Up to `batch_size` messages, waiting at most the batching window once one arrived."""
        messages: list[dict[str, Any]] = []
        window_ends: float | None = None
        while len(messages) < self.batch_size and not self._stop.is_set():
            remaining = None if window_ends is None else window_ends - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            # Short waits keep shutdown prompt; a real long poll would wait up to 20 s.
            wait = 1 if remaining is None else max(0, min(1, int(remaining)))
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(messages)),
                WaitTimeSeconds=wait,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages", [])
            messages += received
            if messages and window_ends is None:
                window_ends = time.monotonic() + self.window
            if not received and messages:
                break  # the queue is drained for now: do not sit out the window
        return messages

    def invoke(self, messages: list[dict[str, Any]]) -> None:
        event = {"Records": [lambda_record(m, self.queue_arn, self.region) for m in messages]}
        context = LocalContext(self.name, self.timeout)
        self.stats.add(batches=1, records=len(messages))
        started = time.monotonic()
        try:
            response = self.handler(event, context)
        except Exception as error:
            # The whole batch failed: every record reappears after its visibility timeout.
            logger.warning(
                "handler raised", extra={"poller": self.name, "error": type(error).__name__}
            )
            self.stats.add(failed_batches=1)
            return
        if time.monotonic() - started > self.timeout:
            # Lambda would have killed the invocation: nothing is deleted.
            logger.warning("handler timed out", extra={"poller": self.name})
            self.stats.add(failed_batches=1)
            return
        failed = failed_ids(response) if self.report_batch_item_failures else set()
        failed = failed or set()
        self.stats.add(reported_failures=len(failed))
        done = [m for m in messages if m["MessageId"] not in failed]
        self.delete(done)

    def delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            response = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)
                ],
            )
            self.stats.add(deleted=len(response.get("Successful", [])))


def rate_seconds(rate: Rate) -> float:
    unit = {"MINUTES": 60, "HOURS": 3600, "DAYS": 86400}[rate.unit]
    return rate.value * unit


def scheduled_event(name: str, region: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:123456789012:rule/{name}"],
        "detail": {},
    }


class Scheduler:
    """Runs each scheduled function at start and then every `interval` seconds."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.runs: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self._jobs: list[tuple[str, Handler, float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, handler: Handler, interval: float, timeout: float) -> None:
        self._jobs.append((name, handler, interval, timeout))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15)

    def _loop(self) -> None:
        due = {name: 0.0 for name, *_ in self._jobs}
        while not self._stop.is_set():
            now = time.monotonic()
            for name, handler, interval, timeout in self._jobs:
                if now >= due[name]:
                    due[name] = now + interval
                    self._run(name, handler, timeout)
            self._stop.wait(0.5)

    def _run(self, name: str, handler: Handler, timeout: float) -> None:
        try:
            handler(scheduled_event(name, self.region), LocalContext(name, timeout))
            self.runs[name] = self.runs.get(name, 0) + 1
        except Exception as error:
            self.errors[name] = self.errors.get(name, 0) + 1
            logger.warning(
                "scheduled function failed", extra={"function": name, "error": str(error)}
            )

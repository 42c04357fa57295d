"""Structured logs, EMF metrics and the audit trail (aws-lambda-powertools), plus a tally.

Metrics go through `EphemeralMetrics`, one set per batch: several batches may be in flight in
one process (the local stack runs them on threads), and Powertools' shared `Metrics` state
would mix them. The process-wide `TALLY` is what the local stack's live view reads.

Audit records are the bulk of the log volume (one per event decision) and CloudWatch Logs
bills every byte ingested, so they are written compactly through the same logger: one JSON
object per decision, `{"audit": decision, "e": event id, "i": interaction id, ...}`, without
the level, location, timestamp and service every operational line carries (CloudWatch stamps
each log event with its time; the log group names the function). Short names:

    e  event_id        i  interaction_id     k  dedup_key (only when it is not the event id)
    m  message_id      f  first_event_id     late  present (true) only for a late event

Every other field keeps its own name. Operational lines keep Powertools' full format, plus
the invocation's Lambda context (`function_request_id`, `function_name`, `cold_start`, ...):
every handler is wrapped with `in_lambda_context`, every route with
`lambda_context_middleware`. Neither logs the event.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

if TYPE_CHECKING:
    from chalice.app import Request, Response

SERVICE = "cxone-relay"
NAMESPACE = "CXoneRelay"
# The log record attribute that marks an audit record and holds its compact fields.
AUDIT_RECORD_ATTRIBUTE = "audit"
AUDIT_SHORT_NAMES = {
    "event_id": "e",
    "interaction_id": "i",
    "dedup_key": "k",
    "message_id": "m",
    "first_event_id": "f",
}


class RelayLogFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON lines, except audit records: those are their compact fields alone."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, AUDIT_RECORD_ATTRIBUTE, None)
        if not isinstance(fields, dict):
            return super().format(record)
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False, default=str)


logger = Logger(service=SERVICE, logger_formatter=RelayLogFormatter())


class LambdaEvent(Protocol):
    """A Chalice event object (SQSEvent, CloudWatchEvent): the event with Lambda's context."""

    context: Any


EventT = TypeVar("EventT", bound=LambdaEvent)
ResultT = TypeVar("ResultT")


def _handle(event: Any, context: Any, handler: Callable[[Any], Any]) -> Any:
    return handler(event)


# Powertools' decorator expects handler(event, context); Chalice handlers take one event object
# that carries the context. log_event=False on purpose, whatever POWERTOOLS_LOGGER_LOG_EVENT
# says: events hold payloads, and payloads stay out of the logs.
_handle_in_lambda_context = logger.inject_lambda_context(_handle, log_event=False)


def in_lambda_context(handler: Callable[[EventT], ResultT]) -> Callable[[EventT], ResultT]:
    """`handler` with Powertools' `inject_lambda_context`: each log line of the invocation
    carries cold_start and the function's name, memory, ARN and request id
    (`function_request_id`), so one invocation's lines can be found together."""

    @functools.wraps(handler)
    def run(event: EventT) -> ResultT:
        result: ResultT = _handle_in_lambda_context(event, event.context, handler)
        return result

    return run


def lambda_context_middleware(
    request: Request, get_response: Callable[[Request], Response]
) -> Response:
    """The same for every route of the API function, as a Chalice "http" middleware."""
    response: Response = _handle_in_lambda_context(request, request.lambda_context, get_response)
    return response


class Tally:
    """Thread-safe process counters of pipeline decisions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, value: int = 1) -> None:
        if value:
            with self._lock:
                self._counts[name] += value

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


TALLY = Tally()


def _metrics() -> EphemeralMetrics:
    # Stages sharing an account stay apart on dashboards and alarms.
    metrics = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    metrics.add_dimension(name="stage", value=os.environ.get("RELAY_STAGE", "dev"))
    return metrics


class BatchMetrics:
    """The metrics of one batch, flushed once as EMF when the batch ends."""

    def __init__(self) -> None:
        self._metrics = _metrics()
        self._per_consumer: dict[str, EphemeralMetrics] = {}

    def count(self, name: str, value: int = 1) -> None:
        TALLY.add(name, value)
        if value:
            self._metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)

    def milliseconds(self, name: str, values: Iterable[float]) -> None:
        for value in values:
            self._metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=value)

    def consumer(self, consumer: str, *, delivered: int, failed: int, publish_ms: float) -> None:
        TALLY.add(f"delivered:{consumer}", delivered)
        TALLY.add("publish_failures", failed)
        metrics = self._per_consumer.get(consumer)
        if metrics is None:
            metrics = _metrics()
            metrics.add_dimension(name="consumer", value=consumer)
            self._per_consumer[consumer] = metrics
        metrics.add_metric(name="Delivered", unit=MetricUnit.Count, value=delivered)
        metrics.add_metric(name="PublishFailures", unit=MetricUnit.Count, value=failed)
        metrics.add_metric(name="PublishMs", unit=MetricUnit.Milliseconds, value=publish_ms)

    def flush(self) -> None:
        for metrics in (self._metrics, *self._per_consumer.values()):
            metrics.flush_metrics(raise_on_empty_metrics=False)


def audit_fields(decision: str, **fields: Any) -> dict[str, Any]:
    """The compact audit record of one decision (see the module's docstring for the names)."""
    record: dict[str, Any] = {"audit": decision}
    for name, value in fields.items():
        if value is None or (name == "late" and value is False):
            continue
        if name == "dedup_key" and value == fields.get("event_id"):
            continue  # the usual case (CXone eventId, EventBridge id): said once, as `e`
        record[AUDIT_SHORT_NAMES.get(name, name)] = value
    return record


def audit(decision: str, **fields: Any) -> None:
    """One audit record per event decision: ids and reasons only, never payload contents."""
    logger.info(decision, extra={AUDIT_RECORD_ATTRIBUTE: audit_fields(decision, **fields)})

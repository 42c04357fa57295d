"""Structured logs, EMF metrics and the audit trail (aws-lambda-powertools), plus a tally.

Metrics go through `EphemeralMetrics`, one set per batch: several batches may be in flight in
one process (the local stack runs them on threads), and Powertools' shared `Metrics` state
would mix them. The process-wide `TALLY` is what the local stack's live view reads.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

SERVICE = "cxone-relay"
NAMESPACE = "CXoneRelay"

logger = Logger(service=SERVICE)


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


def audit(decision: str, **fields: Any) -> None:
    """One audit record per event decision: ids and reasons only, never payload contents."""
    logger.info("audit", extra={"audit": {"decision": decision, **fields}})

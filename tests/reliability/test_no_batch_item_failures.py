"""An event source mapping WITHOUT ReportBatchItemFailures, with the default failure mode.

Chalice creates the mapping without ReportBatchItemFailures (it cannot set it) and provisioning
turns it on later; a user who skips that step, or the window in between, must not lose events.
On such a mapping Lambda ignores `batchItemFailures`: a returned response deletes the whole
batch, a raised error keeps it. The local runner (`SqsPoller(report_batch_item_failures=False)`)
behaves exactly so. Against the real moto server, with the real `ingest` handler of app.py.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chalicelib.runtime import Runtime
from scripts.local.runner import SqsPoller
from tests.support.fakes import Call, Faults, InlineExecutor, SimulatedCrash, internal_error
from tests.support.reliability import (
    REGION,
    EventKey,
    Stage,
    check_deliveries,
    event_key,
    inject,
    lifecycle,
    opened,
    provisioned_stage,
    repeated,
    unique,
)

# Short enough for a test, in the proportions of a deployment: a live invocation (its
# deadline is the poller's timeout; one that runs over it counts as killed) keeps its lease, a
# crashed one's records come back after its lease ended (the queue's visibility timeout), and
# a record waiting on that lease has more receives (backoff 1, 2, 4, 4 … s: 115 s for the 30
# of the redrive policy) than the lease lasts, with room for the waits of FIFO-like order.
LEASE_SECONDS = 30
INVOCATION_TIMEOUT_SECONDS = 10
VISIBILITY_SECONDS = LEASE_SECONDS + 1


@pytest.fixture(scope="module")
def no_rbif_runtime(aws_endpoint: str) -> Iterator[Runtime]:
    # Default settings (RELAY_BATCH_FAILURE_MODE unset) apart from the time scale above.
    with provisioned_stage(
        RELAY_LEASE_SECONDS=str(LEASE_SECONDS),
        RELAY_BACKOFF_BASE_SECONDS="1",
        RELAY_BACKOFF_MAX_SECONDS="4",
    ) as runtime:
        yield runtime


@pytest.fixture
def stage(no_rbif_runtime: Runtime) -> Iterator[Stage]:
    with opened(no_rbif_runtime) as stage:
        stage.sqs.set_queue_attributes(
            QueueUrl=stage.ingest_url, Attributes={"VisibilityTimeout": str(VISIBILITY_SECONDS)}
        )
        yield stage


def ingest_handler() -> Callable[[dict[str, Any], Any], Any]:
    import app as app_module

    return app_module.app.handler_map["ingest"]


def no_rbif_poller(stage: Stage, handler: Callable[..., Any], concurrency: int) -> SqsPoller:
    return SqsPoller(
        stage.sqs,
        name="ingest-no-rbif",
        queue_url=stage.ingest_url,
        queue_arn=stage.ingest_arn,
        region=REGION,
        handler=handler,
        batch_size=10,
        batching_window_seconds=0.2,
        timeout_seconds=INVOCATION_TIMEOUT_SECONDS,
        concurrency=concurrency,
        report_batch_item_failures=False,
    )


def run_until_drained(stage: Stage, poller: SqsPoller, limit_seconds: float) -> None:
    started = time.monotonic()
    poller.start()
    try:
        while stage.depth() and time.monotonic() - started < limit_seconds:
            time.sleep(0.25)
    finally:
        poller.stop()
    assert stage.depth() == 0, f"the ingest queue did not drain in {limit_seconds} s"


class Chaos(Faults):
    """Random faults moto cannot produce, per call, from a seeded generator, shared by the
    concurrent invocations; each invocation runs on one poller thread (the runtime's executor
    is inline), so a crash is per thread:

    - a dependency failing after the SDK's own retries (a 500 on a DynamoDB or SNS request);
    - the invocation dying before or after a call (Lambda killed, out of memory): that call and
      every later one of the invocation never happen, the mapping sees a failed invocation.
    """

    def __init__(self, seed: int, *, error_rate: float, crash_rate: float, crashes: int) -> None:
        self.rng = random.Random(seed)
        self.error_rate = error_rate
        self.crash_rate = crash_rate
        self.crashes_left = crashes
        self.dead: set[str] = set()  # threads whose current invocation died
        self.lock = threading.Lock()

    def start_invocation(self) -> None:
        with self.lock:
            self.dead.discard(threading.current_thread().name)

    def _crash_here(self, call: Call) -> bool:
        if call.service not in ("dynamodb", "sns") or self.crashes_left == 0:
            return False
        if self.rng.random() >= self.crash_rate:
            return False
        self.crashes_left -= 1
        self.dead.add(call.thread)
        return True

    def before(self, call: Call) -> None:
        with self.lock:
            if call.thread in self.dead:
                raise SimulatedCrash(f"already dead at {call.operation}")
            if self._crash_here(call):
                raise SimulatedCrash(f"died before {call.operation}")
            failing = call.service in ("dynamodb", "sns") and self.rng.random() < self.error_rate
        if failing:
            raise internal_error(call.operation)

    def after(self, call: Call) -> None:
        with self.lock:
            if self._crash_here(call):
                raise SimulatedCrash(f"died after {call.operation}")


class InvocationDied(Exception):
    """What the mapping sees of an invocation that died: a failed invocation."""


def test_three_concurrent_invocations_without_rbif_under_faults_and_crashes_lose_nothing(
    stage: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulates DynamoDB and SNS failing 5 % of requests after the SDK's retries and up to
    four invocations dying at a random call, with three batches in flight at once on a mapping
    that ignores batchItemFailures. Nothing is lost, no consumer gets an event twice unless an
    invocation died between publishing it and recording that, and each consumer receives every
    interaction's events in order (except those flagged late)."""
    runtime = stage.runtime
    assert runtime.settings.batch_failure_mode == "raise"  # the default
    monkeypatch.setattr(runtime, "executor", InlineExecutor())
    chaos = Chaos(seed=12, error_rate=0.05, crash_rate=0.02, crashes=4)
    inject(runtime, chaos, ["dynamodb", "sns"])
    handler = ingest_handler()
    crashed_keys: set[EventKey] = set()

    def invoke(event: dict[str, Any], context: Any) -> Any:
        chaos.start_invocation()
        keys = [event_key(json.loads(r["body"])) for r in event["Records"]]
        started = time.monotonic()
        try:
            return handler(event, context)
        except SimulatedCrash as crash:
            # Any event of the batch may have been published and not recorded.
            crashed_keys.update(keys)
            raise InvocationDied(str(crash)) from None
        finally:
            # Lambda kills an invocation at its timeout, a crash at whatever call it was making;
            # this thread runs on (on a loaded machine, past its lease and its records'
            # visibility), so count it as the crash it would have been.
            if time.monotonic() - started > INVOCATION_TIMEOUT_SECONDS:
                crashed_keys.update(keys)

    prefix = unique("norbif")
    events = [e for n in range(12) for e in lifecycle(f"{prefix}-{n}", 5, provider_ids=n % 2 == 0)]
    rng = random.Random(3)
    bodies = [*events, *rng.sample(events, 10)]  # some sent twice, as EventBridge may
    rng.shuffle(bodies)
    stage.send(bodies)

    poller = no_rbif_poller(stage, invoke, concurrency=3)
    run_until_drained(stage, poller, limit_seconds=600)

    stats = poller.stats.as_dict()
    deliveries = stage.deliveries()
    print(
        f"{len(bodies)} records, {len(events)} events, poller {stats}, "
        f"crashes {4 - chaos.crashes_left}, repeats {repeated(deliveries)}"
    )
    assert stats["failed_batches"] > 0  # the faults did fail batches
    check_deliveries(
        deliveries,
        {event_key(e) for e in events},
        may_repeat=crashed_keys,
        consumers=runtime.settings.consumers,
    )
    assert stage.dlq_depth() == 0


def test_a_failed_record_on_a_mapping_without_rbif_comes_back_and_is_delivered(
    stage: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulates SNS failing every request of one interaction's topic publishes once (after
    the SDK's retries). With "report" this record was deleted with its batch (lost); with the
    default the function deletes the two delivered records itself and raises, so only the
    failed one comes back, and it is delivered."""
    runtime = stage.runtime
    prefix = unique("one")
    fine, doomed = f"{prefix}-fine", f"{prefix}-doomed"

    class FailOnce(Faults):
        failed = False

        def before(self, call: Call) -> None:
            entries = call.params.get("PublishBatchRequestEntries", [])
            if not self.failed and any(doomed in entry["Message"] for entry in entries):
                self.failed = True
                raise internal_error(call.operation)

    monkeypatch.setattr(runtime, "executor", InlineExecutor())
    inject(runtime, FailOnce(), ["sns"])
    events = [*lifecycle(fine, 2), *lifecycle(doomed, 1)]
    stage.send(events)
    poller = no_rbif_poller(stage, ingest_handler(), concurrency=1)
    run_until_drained(stage, poller, limit_seconds=120)

    stats = poller.stats.as_dict()
    assert stats["failed_batches"] >= 1
    check_deliveries(
        stage.deliveries(), {event_key(e) for e in events}, consumers=runtime.settings.consumers
    )

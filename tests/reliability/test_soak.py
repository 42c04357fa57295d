"""Soak: 5,000 simulated CXone events through the local stack's machinery, with random faults.

scripts.traffic.simulate's traffic (duplicates, reordering, invalid events) goes through the local
runner (scripts.local.runner.SqsPoller, two batches in flight) into app.py's `ingest`, which
reads and writes the stage's real DynamoDB tables and publishes to its real SNS topics on a moto
server, while about 2% of those calls fail: throttling and 5xx before a call takes effect,
BatchGetItem/BatchWriteItem work left unprocessed, single PublishBatch entries refused, and
responses lost after a call took effect (a claim that was written, a publish that went out).

Two things differ from the local stack, both for time (the soak takes minutes on two cores;
it prints how long, and waits for the queue to drain with a generous guard, never a speed
target): the ingest queue is tests.support.fakes.FakeSqs on the real clock with the stage's
visibility timeout and redrive policy (moto's ReceiveMessage costs time in proportion to the queue's
length, ~0.6 ms per queued message), and the moto server runs in a process of its own, so the
function and the AWS side use both cores. Deliveries are counted at the SNS boundary: the
entries each topic accepted, which is what a subscriber receives.

Counts reconcile afterwards: every valid event reached every consumer; no consumer got one twice
except from a PublishBatch whose response was lost (the only crash window this soak opens:
published, then not recorded); every invalid record was quarantined; the pipeline's own tally
agrees; nothing is left on the queue and nothing went to the DLQ.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.aws import BATCH_ATTEMPTS, QUEUE_URLS
from chalicelib.runtime import Runtime
from chalicelib.stack import stack_spec
from chalicelib.telemetry import TALLY
from chalicelib.timing import MAX_RECEIVE_COUNT
from scripts.local.runner import SqsPoller
from scripts.traffic.simulate import TrafficProfile, generate_traffic, summarize
from tests.support.environment import free_port
from tests.support.fakes import Call, FakeSqs, Faults, QueuedMessage, client_error, internal_error
from tests.support.reliability import (
    ACCOUNT_ID,
    REGION,
    EventKey,
    FaultyClient,
    message_key,
    provisioned_stage,
    run_until_drained,
)

EVENTS = 5_000
SEED = 5_000
FAULT_RATE = 0.02  # per DynamoDB / SNS call
ENTRY_FAULT_RATE = 0.005  # per PublishBatch entry
LOST_RESPONSE_RATE = 0.005  # per PutItem / PublishBatch that took effect
PICK_WINDOW = 20  # a receive takes its messages from about this many of the oldest


class RandomFaults(Faults):
    """Seeded random faults in the function's DynamoDB and SNS calls, counted by kind.

    A settle (BatchWriteItem) never fails every one of the ledger's attempts in a row: that
    would be a crash window (published, not recorded), and this soak opens only the
    lost-response one, whose repeats it can account for.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.write_streak: dict[str, int] = defaultdict(int)  # per invocation thread
        self.local = threading.local()

    def _roll(self, rate: float) -> bool:
        with self.lock:
            return self.rng.random() < rate

    def _count(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.injected[kind] += n

    def _settle_fault(self) -> str | None:
        """This BatchWriteItem attempt's fault: "error", "unprocessed" or None; never one more
        than the ledger's attempts minus one in a row."""
        thread = threading.current_thread().name
        with self.lock:
            draw = self.rng.random()
        if self.write_streak[thread] >= BATCH_ATTEMPTS - 2 or draw >= 2 * FAULT_RATE:
            self.write_streak[thread] = 0
            return None
        self.write_streak[thread] += 1
        return "error" if draw < FAULT_RATE else "unprocessed"

    def before(self, call: Call) -> None:
        if call.operation == "BatchWriteItem":
            fault = self._settle_fault()
            self.local.settle_unprocessed = fault == "unprocessed"
            if fault != "error":
                return
        elif not self._roll(FAULT_RATE):
            return
        if call.service == "dynamodb":
            self._count(f"{call.operation} throttled")
            raise client_error("ProvisionedThroughputExceededException", call.operation)
        self._count(f"{call.operation} 5xx")
        raise internal_error(call.operation)

    def after(self, call: Call) -> None:
        if call.operation in ("PutItem", "PublishBatch") and self._roll(LOST_RESPONSE_RATE):
            self._count(f"{call.operation} response lost")
            raise internal_error(call.operation)

    def failed_entries(self, call: Call) -> dict[str, str]:
        entries = call.params["PublishBatchRequestEntries"]
        failed = {e["Id"]: "InternalError" for e in entries if self._roll(ENTRY_FAULT_RATE)}
        if failed:
            self._count("PublishBatch entry refused", len(failed))
        return failed

    def unprocessed(self, call: Call, count: int) -> set[int]:
        if call.operation == "BatchWriteItem":
            if not self.local.settle_unprocessed:
                return set()
        elif not self._roll(FAULT_RATE):
            return set()
        self._count(f"{call.operation} unprocessed")
        with self.lock:
            return {i for i in range(count) if self.rng.random() < 0.5}


class CountingSns(FaultyClient):
    """The faulty SNS client, also recording what each topic accepted (what its subscribers
    get) and, per topic, the events it accepted in calls whose response was then lost."""

    def __init__(self, client: Any, faults: RandomFaults) -> None:
        super().__init__(client, "sns", faults)
        self.accepted: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.lost: dict[str, set[EventKey]] = defaultdict(set)
        self.lock = threading.Lock()
        self.local = threading.local()

    def _publish_batch(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        response = super()._publish_batch(call, params)
        by_id = {entry["Id"]: entry for entry in params["PublishBatchRequestEntries"]}
        messages = [json.loads(by_id[ok["Id"]]["Message"]) for ok in response["Successful"]]
        self.local.accepted = messages
        with self.lock:
            self.accepted[params["TopicArn"]] += messages
        return response

    def _call(self, method: str, operation: str, params: dict[str, Any]) -> Any:
        self.local.accepted = []
        try:
            return super()._call(method, operation, params)
        except ClientError:
            if operation == "PublishBatch" and self.local.accepted:  # it went out; answer lost
                keys = {message_key(m) for m in self.local.accepted if "event" in m}
                with self.lock:
                    self.lost[params["TopicArn"]] |= keys
            raise


class RealClock:
    """FakeSqs's clock, on real time: visibility timeouts and backoffs take real seconds."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class MappingSide:
    """What SqsPoller calls on SQS (ReceiveMessage, DeleteMessageBatch), over a FakeSqs queue,
    with the queue's redrive policy: a record received MAX_RECEIVE_COUNT times and failed again
    goes to `dead_letters` instead of back to the function."""

    def __init__(self, sqs: FakeSqs, url: str, seed: int) -> None:
        self.sqs, self.url = sqs, url
        self.rng = random.Random(seed)
        self.dead_letters: list[QueuedMessage] = []

    def _pick(self, visible: list[QueuedMessage]) -> list[QueuedMessage]:
        queue = self.sqs.queues[self.url]
        ready = []
        for message in visible:
            if message.receive_count >= MAX_RECEIVE_COUNT:
                self.dead_letters.append(queue.messages.pop(message.message_id))
            else:
                ready.append(message)
        # SQS standard queues return roughly, not exactly, the oldest messages first.
        window = ready[:PICK_WINDOW]
        return self.rng.sample(window, len(window))

    def receive_message(self, QueueUrl: str, MaxNumberOfMessages: int, **_: Any) -> dict:
        messages = self.sqs.receive(QueueUrl, MaxNumberOfMessages, self._pick)
        if not messages:
            time.sleep(0.02)  # what a long poll on an empty queue would cost the poller
        return {
            "Messages": [
                {
                    "MessageId": m.message_id,
                    "ReceiptHandle": m.receipt_handle,
                    "Body": m.body,
                    "Attributes": {"ApproximateReceiveCount": str(m.receive_count)},
                }
                for m in messages
            ]
        }

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
        return self.sqs.delete_message_batch(QueueUrl=QueueUrl, Entries=Entries)


@pytest.fixture(scope="module")
def moto_process(aws_endpoint: str) -> Iterator[str]:
    """A moto server in a process of its own (the session's runs in pytest's process)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "moto did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def soak_runtime(moto_process: str) -> Iterator[Runtime]:
    # A lost claim response leaves the claim (and its lease) written: a short lease and a
    # one-second backoff let its records through after a receive or two instead of a minute.
    overrides = {
        "AWS_ENDPOINT_URL": moto_process,
        "RELAY_LEASE_SECONDS": "2",
        "RELAY_BACKOFF_BASE_SECONDS": "1",
        "RELAY_BACKOFF_MAX_SECONDS": "1",
        # This poller honours batchItemFailures (ReportBatchItemFailures verified), as the
        # packaged mapping does; the default "raise" mode has its own suite without it.
        "RELAY_BATCH_FAILURE_MODE": "report",
    }
    with provisioned_stage(**overrides) as runtime:
        yield runtime


@pytest.mark.slow(seconds=270)
def test_5000_events_with_random_faults_reconcile(
    soak_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app as app_module

    runtime = soak_runtime
    names = runtime.settings.names
    queue_sqs = FakeSqs(RealClock(), REGION, ACCOUNT_ID)  # type: ignore[arg-type]
    spec = next(q for q in stack_spec(runtime.settings).queues if q.name == names.ingest_queue)
    queue = queue_sqs.create_queue(names.ingest_queue, spec.visibility_timeout)
    mapping_side = MappingSide(queue_sqs, queue.url, SEED)
    faults = RandomFaults(SEED)
    sns = CountingSns(runtime.client("sns"), faults)
    dynamodb = FaultyClient(runtime.client("dynamodb"), "dynamodb", faults)
    with runtime._lock:
        runtime._clients.update(sns=sns, dynamodb=dynamodb, sqs=queue_sqs)
    monkeypatch.setattr(QUEUE_URLS, "_urls", {})  # the queue's URL is the fake's
    items = generate_traffic(EVENTS, TrafficProfile(), seed=SEED)
    summary = summarize(items)
    for item in items:
        queue_sqs.send(queue.url, json.dumps(item.event))
    TALLY.reset()

    runner = SqsPoller(
        mapping_side,
        name="ingest",
        queue_url=queue.url,
        queue_arn=queue.arn,
        region=REGION,
        handler=app_module.app.handler_map["ingest"],
        batch_size=10,
        batching_window_seconds=0,
        timeout_seconds=10,
        concurrency=2,  # two batches in flight, as Lambda scales out
    )
    elapsed = run_until_drained([runner], lambda: queue_sqs.pending(queue.url))

    tally = TALLY.snapshot()
    per_consumer = {c: sns.accepted[arn] for c, arn in runtime.consumer_topics.items()}
    quarantined = sns.accepted[runtime.quarantine_topic]
    receives = Counter(m.receive_count for m in mapping_side.dead_letters)
    print(
        f"\nsoak: {summary.total} records ({summary.valid} events, {summary.duplicates} "
        f"duplicates, {summary.invalid} invalid, {summary.reordered} reordered) in {elapsed:.1f} s"
        f"\n  runner {runner.stats.as_dict()}"
        f"\n  faults injected {dict(sorted(faults.injected.items()))}"
        f"\n  delivered per consumer { {c: len(m) for c, m in per_consumer.items()} }, "
        f"quarantined {len(quarantined)}, dead-lettered {len(mapping_side.dead_letters)}"
        f"\n  pipeline tally { {k: v for k, v in sorted(tally.items()) if ':' not in k} }"
    )
    assert not mapping_side.dead_letters, f"dead-lettered after {dict(receives)} receives"

    expected = {item.dedup_key for item in items if item.kind != "invalid"}
    assert len(expected) == summary.valid
    for consumer, messages in per_consumer.items():
        counts = Counter(message_key(m) for m in messages)
        assert set(counts) == expected, f"{consumer} lost {len(expected - set(counts))} events"
        twice = {key for key, count in counts.items() if count > 1}
        outside = twice - sns.lost[runtime.consumer_topics[consumer]]
        assert not outside, f"{consumer} got {len(outside)} events twice outside a crash window"
    assert len({m["message_id"] for m in quarantined}) == summary.invalid
    assert tally.get("Delivered", 0) == summary.valid
    assert tally.get("Quarantined", 0) == summary.invalid
    assert sum(faults.injected.values()) > 100  # the faults were real

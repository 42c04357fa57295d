"""The model the ingest pipeline's property tests run: streams, chaos, invocations, checks.

Shared by tests/unit/test_pipeline_properties.py (over the in-memory fakes) and
tests/integration/test_pipeline.py (the same property on the moto server).

Random interaction streams (duplicated, re-sent by the provider, shuffled, some invalid) go
onto a model SQS queue; a model event source mapping (`drain`) hands random batches to
`handle_ingest`, up to three invocations at once, while the AWS calls fail at random
(`ChaosFaults`): DynamoDB and SNS errors and lost connections, a PutItem that took effect but
whose response was lost, unprocessed BatchWriteItem/BatchGetItem items, whole PublishBatch
requests and single entries failing, invocations dying at any call, invocations starting with
too little time left. Failed records come back after the backoff the function set; a dead
invocation's records after the visibility timeout, by when its leases have expired. Once the
queue drains, the checks assert:

1. every valid event reached every consumer (nothing lost);
2. a consumer got an event more than once only across an invocation that published it and
   then died (or lost DynamoDB for good) before recording that publish: checked right as
   each invocation ends, against the ledger;
3. within each interaction, each consumer got the events not flagged `late` in order-key
   order (first deliveries), `late` is one value per event, and a late event has a newer
   sibling;
4. every delivery of an event carries one `event_id`, re-sends and retries included;
5. every invalid record is in quarantine, and nothing valid is;
6. the counts reconcile (defined in `check_tally`).

Invocations run on threads but one at a time (`Scheduler`): each yields only at an AWS call,
and who goes next, like every fault, comes from one seeded Random, so a failing example
replays exactly. The model has no DLQ (records retry until they succeed), so claims are never
given up as stuck.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from random import Random
from typing import Any
from unittest import mock

from botocore.exceptions import BotoCoreError, EndpointConnectionError
from hypothesis import strategies as st

from chalicelib.aws import BATCH_ATTEMPTS, QUEUE_URLS
from chalicelib.ingest.handler import handle_ingest
from chalicelib.store.layout import event_key
from chalicelib.telemetry import Tally
from tests.support.fakes import (
    Call,
    FakeAws,
    FakeClock,
    Faults,
    QueuedMessage,
    SimulatedCrash,
    internal_error,
    throttling,
)

MAX_ROUNDS = 1500  # a livelock never drains; the harshest chaos drains in a few hundred
STAGES = ("Queued", "Offered", "Connected", "WrapUp", "Closed")
INVALID_BODIES = (
    "not json at all",
    '["an", "array"]',
    '{"source": "com.nice.cxone.interactions", "detail-type": "Routing.StateChanged"}',
    '{"id": "x", "source": "com.nice.cxone.interactions", "time": NaN}',
)


# --------------------------------------------------------------------------- the stream


@dataclass(frozen=True)
class StreamEvent:
    interaction_id: str
    dedup_key: str
    event_id: str  # of the first copy; re-sends carry another envelope id
    order_key: tuple[Any, str]
    body: dict[str, Any]


@dataclass
class Stream:
    events: list[StreamEvent]
    bodies: list[str]  # every record put on the queue: copies and invalid ones included
    invalid: list[str]


@st.composite
def streams(draw: st.DrawFn, max_interactions: int = 4, max_events: int = 8) -> Stream:
    """Interactions of 1-8 events, keyed by sequence, by time only (ties included) or mixed
    (some events with a sequence, some without: ordered by time), some with the provider's own
    event ids (reused across interactions: dedup is per interaction); each event sent 1-3
    times, as the same record or as a provider re-send with a new envelope id, which may carry
    another payload (a conflict: the first payload claimed wins); plus a few invalid records."""
    events: list[StreamEvent] = []
    bodies: list[str] = []
    for i in range(draw(st.integers(1, max_interactions))):
        interaction = f"int-{i}"
        kind = draw(st.sampled_from(["sequence", "time", "mixed"]))
        provider_ids = draw(st.booleans())
        count = draw(st.integers(1, max_events))
        sequences = draw(st.lists(st.integers(0, 30), min_size=count, max_size=count, unique=True))
        for j in range(count):
            sequenced = kind == "sequence" or (kind == "mixed" and draw(st.booleans()))
            if sequenced:
                # A sequenced event's time follows its sequence, as a provider's clock would.
                sequence: int | None = sequences[j]
                millis = sequences[j] * 1000
            else:
                sequence, millis = None, draw(st.integers(0, 60)) * 500
            detail: dict[str, Any] = {
                "interaction.id": interaction,
                "stage": draw(st.sampled_from(STAGES)),
                "timestamp": f"2026-11-29T09:{millis // 60000:02d}:"
                f"{millis // 1000 % 60:02d}.{millis % 1000:03d}Z",
            }
            if sequence is not None:
                detail["sequence"] = sequence
            if provider_ids:
                detail["eventId"] = f"evt-{j}"
            event_id = f"{i}-{j}"
            body = envelope(event_id, detail)
            by_sequence = kind == "sequence"
            order_key = (sequence, event_id) if by_sequence else (detail["timestamp"], event_id)
            events.append(
                StreamEvent(interaction, detail.get("eventId", event_id), event_id, order_key, body)
            )
            for copy in range(draw(st.integers(1, 3))):
                resend = provider_ids and copy > 0 and draw(st.booleans())
                conflicting = resend and draw(st.booleans())
                copy_detail = detail | {"note": f"changed-{copy}"} if conflicting else detail
                copy_body = envelope(f"{event_id}-r{copy}", copy_detail) if resend else body
                bodies.append(json.dumps(copy_body))
    invalid = [
        f"{body} " * (n + 1)  # distinct bodies, each its own quarantine message
        for n, body in enumerate(draw(st.lists(st.sampled_from(INVALID_BODIES), max_size=3)))
    ]
    return Stream(events, bodies + invalid, invalid)


def with_interaction_prefix(stream: Stream, prefix: str) -> Stream:
    """The same stream with interaction ids made unique (runs sharing one moto stage)."""

    def renamed(event: dict[str, Any]) -> dict[str, Any]:
        detail = event["detail"] | {"interaction.id": prefix + event["detail"]["interaction.id"]}
        return event | {"detail": detail}

    events = [
        StreamEvent(
            prefix + e.interaction_id, e.dedup_key, e.event_id, e.order_key, renamed(e.body)
        )
        for e in stream.events
    ]
    bodies = [
        body if body in stream.invalid else json.dumps(renamed(json.loads(body)))
        for body in stream.bodies
    ]
    return Stream(events, bodies, stream.invalid)


def envelope(event_id: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Interaction.Lifecycle.StageChanged",
        "source": "com.nice.cxone.interactions",
        "account": "123456789012",
        "time": "2026-11-29T09:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


# --------------------------------------------------------------------------- chaos


@dataclass(frozen=True)
class Chaos:
    """Per-call probabilities of each fault."""

    dynamodb_error: float  # throttled / internal error before the call takes effect
    lost_response: float  # PutItem took effect, its response was lost (a timeout)
    unprocessed: float  # BatchWriteItem / BatchGetItem leaves part of the work
    sns_error: float  # a whole PublishBatch request fails
    entry_failure: float  # per entry (see `ChaosFaults.failed_entries`)
    crash: float  # the invocation dies at this call
    sqs_error: float
    deadline: float  # an invocation starts with less time left than the safety margin


chaos_levels = st.sampled_from([0.0, 0.05, 0.2])
chaoses = st.builds(
    Chaos,
    dynamodb_error=chaos_levels,
    lost_response=chaos_levels,
    unprocessed=chaos_levels,
    sns_error=chaos_levels,
    entry_failure=chaos_levels,
    crash=st.sampled_from([0.0, 0.02, 0.06]),
    sqs_error=chaos_levels,
    deadline=st.sampled_from([0.0, 0.1]),
)


@dataclass
class Invocation:
    name: str
    records: list[QueuedMessage]
    crashed_at: str | None = None
    write_fault_streak: int = 0
    settle_failed: bool = False  # a settle write (BatchWriteItem, release) failed every attempt
    response: dict[str, Any] | None = None
    unexpected: BaseException | None = None


class Scheduler:
    """Runs invocations on threads, one at a time; a thread yields only at an AWS call, and
    `rng` picks who goes next. With the fakes' inline executor, one invocation = one thread."""

    def __init__(self, rng: Random) -> None:
        self.rng = rng
        self.condition = threading.Condition()
        self.turn: str | None = None
        self.parked: set[str] = set()
        self.alive: set[str] = set()

    def checkpoint(self) -> None:
        name = threading.current_thread().name
        with self.condition:
            if name not in self.alive:
                return
            self.parked.add(name)
            self.turn = None
            self.condition.notify_all()
            if not self.condition.wait_for(lambda: self.turn == name, timeout=30):
                raise RuntimeError(f"{name} never got its turn back")
            self.parked.discard(name)

    def run(self, jobs: dict[str, Callable[[], None]]) -> None:
        def body(name: str, job: Callable[[], None]) -> None:
            try:
                self.checkpoint()
                job()
            finally:
                with self.condition:
                    self.alive.discard(name)
                    self.turn = None
                    self.condition.notify_all()

        with self.condition:
            self.alive = set(jobs)
        threads = [
            threading.Thread(target=body, args=(name, job), name=name, daemon=True)
            for name, job in jobs.items()
        ]
        for thread in threads:
            thread.start()
        with self.condition:
            while self.alive:
                settled = self.condition.wait_for(
                    lambda: self.turn is None and self.alive <= self.parked, timeout=30
                )
                assert settled, "an invocation blocked outside the AWS calls"
                if self.alive:
                    self.turn = self.rng.choice(sorted(self.alive))
                    self.condition.notify_all()
        for thread in threads:
            thread.join(timeout=30)


class ChaosFaults(Faults):
    def __init__(self, rng: Random, chaos: Chaos, scheduler: Scheduler) -> None:
        self.rng, self.chaos, self.scheduler = rng, chaos, scheduler
        self.invocations: dict[str, Invocation] = {}

    def _invocation(self) -> Invocation:
        return self.invocations[threading.current_thread().name]

    def before(self, call: Call) -> None:
        self.scheduler.checkpoint()
        invocation = self._invocation()
        if invocation.crashed_at is not None:
            raise SimulatedCrash(invocation.crashed_at)  # a dead process makes no more calls
        roll = self.rng.random()
        if roll < self.chaos.crash:
            invocation.crashed_at = f"before {call.operation}"
            raise SimulatedCrash(invocation.crashed_at)
        rate = {
            "dynamodb": self.chaos.dynamodb_error,
            "sns": self.chaos.sns_error,
            "sqs": self.chaos.sqs_error,
        }[call.service]
        if self.rng.random() < rate:
            if call.operation == "BatchWriteItem" or releasing(call):
                self._write_fault(invocation)
            raise self.rng.choice([throttling, internal_error, connection_lost])(call.operation)

    def _write_fault(self, invocation: Invocation) -> None:
        """The ledger gives up on a settle after BATCH_ATTEMPTS failed tries in a row."""
        invocation.write_fault_streak += 1
        if invocation.write_fault_streak >= BATCH_ATTEMPTS:
            invocation.settle_failed = True

    def after(self, call: Call) -> None:
        if releasing(call):
            self._invocation().write_fault_streak = 0  # this release went through
        if call.operation == "PutItem" and self.rng.random() < self.chaos.lost_response:
            raise internal_error(call.operation)

    def failed_entries(self, call: Call) -> dict[str, str]:
        """Failed entries, with every later entry of the same interaction in the request.

        That is what `fanout.publish_ordered` relies on (it cannot undo entries SNS accepted);
        a lone failed entry followed by accepted ones of its interaction is the xfail test
        in tests/unit/test_pipeline_properties.py.
        """
        failed: dict[str, str] = {}
        failed_groups: set[str] = set()
        for entry in call.params["PublishBatchRequestEntries"]:
            group = json.loads(entry["Message"]).get("interaction_id", entry["Id"])
            if group in failed_groups or self.rng.random() < self.chaos.entry_failure:
                failed[entry["Id"]] = "InternalError"
                failed_groups.add(group)
        return failed

    def unprocessed(self, call: Call, count: int) -> set[int]:
        left = set()
        if self.rng.random() < self.chaos.unprocessed:
            left = {i for i in range(count) if self.rng.random() < 0.5}
        if call.operation == "BatchWriteItem":
            if left:
                self._write_fault(self._invocation())
            else:
                self._invocation().write_fault_streak = 0  # this chunk went through
        return left


def releasing(call: Call) -> bool:
    """The ledger's release of an interaction record (a settle write, like BatchWriteItem)."""
    return call.operation == "PutItem" and call.params.get("ConditionExpression") == "v = :v"


def connection_lost(operation: str) -> BotoCoreError:
    """What botocore raises once its own retries of a dropped connection run out."""
    return EndpointConnectionError(endpoint_url=f"https://aws.example/{operation}")


class InvocationTally(Tally):
    """telemetry.TALLY, split by invocation (= thread): a dead invocation's partial counts
    must be told apart from the finished ones'."""

    def __init__(self) -> None:
        super().__init__()
        self.by_invocation: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, name: str, value: int = 1) -> None:
        super().add(name, value)
        with self._lock:
            self.by_invocation[threading.current_thread().name][name] += value


@dataclass
class LambdaContext:
    remaining_ms: int
    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Run:
    aws: FakeAws
    faults: ChaosFaults
    invocations: list[Invocation] = field(default_factory=list)
    # (interaction, dedup key, consumer) -> publishes the invocation making them did not record
    unrecorded: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    rounds: int = 0


# --------------------------------------------------------------------------- the run


@contextmanager
def patched(clock: FakeClock, tally: Tally) -> Iterator[None]:
    with (
        mock.patch("chalicelib.ingest.batch.utc_now", clock.now),
        # A batch waiting for its turn lets the model's time pass, not the test's.
        mock.patch("chalicelib.ingest.batch.sleep", clock.advance),
        mock.patch("chalicelib.aws.sleep_before_retry", lambda attempt: None),
        mock.patch("chalicelib.ingest.ledger.sleep_before_retry", lambda attempt: None),
        mock.patch("chalicelib.telemetry.TALLY", tally),
        # This queue model has no DLQ: records retry until they succeed, however long that
        # takes, so a claim must never be given up as stuck (what a DLQ'd record's becomes).
        mock.patch("chalicelib.ingest.batch.stuck_claim_ms", lambda stage: 10**12),
        # The queue URL cache would make the first example's calls differ from a replay's.
        mock.patch.dict(QUEUE_URLS._urls, clear=True),
    ):
        yield


def dedup_key_of(message: dict[str, Any]) -> str:
    return message["event"]["detail"].get("eventId") or message["event"]["id"]


def record_publishes(run: Run, invocation: Invocation) -> None:
    """Right when an invocation ends: which of its publishes did the ledger not record?"""
    aws = run.aws
    names = aws.settings.names
    for consumer, deliveries in aws.consumer_messages().items():
        for delivery in deliveries:
            if delivery.thread != invocation.name:
                continue
            message = delivery.json()
            interaction, key = message["interaction_id"], dedup_key_of(message)
            if aws.dynamodb.get(names.events_table, event_key(interaction, key)) is not None:
                continue
            record = aws.dynamodb.get(names.ledger_table, {"pk": {"S": interaction}}) or {}
            claim = record.get("inf", {}).get("M", {}).get(key, {}).get("M", {})
            if {"S": consumer} in claim.get("d", {}).get("L", []):
                continue
            assert invocation.crashed_at or invocation.settle_failed, (
                f"{invocation.name} finished normally but did not record that {consumer} got "
                f"{interaction}/{key}"
            )
            run.unrecorded[(interaction, key, consumer)] += 1


def invoke(run: Run, invocation: Invocation, remaining_ms: int) -> None:
    aws = run.aws
    event = aws.sqs.lambda_event(aws.ingest_queue.url, invocation.records)
    context = LambdaContext(remaining_ms, invocation.name)
    try:
        with suppress(SimulatedCrash):
            response = handle_ingest(event, context, aws.runtime)
            # It may also die after its last call, before Lambda gets the response.
            if run.faults.rng.random() < run.faults.chaos.crash:
                invocation.crashed_at = "before returning"
            else:
                invocation.response = response
        record_publishes(run, invocation)
    except BaseException as error:  # re-raised on the test's thread, not lost in this one
        invocation.unexpected = error


def drain(stream: Stream, chaos: Chaos, rng: Random, build_aws: Callable[[Faults], FakeAws]) -> Run:
    """Run the stream through the model queue until it is empty; returns what happened."""
    scheduler = Scheduler(rng)
    faults = ChaosFaults(rng, chaos, scheduler)
    aws = build_aws(faults)
    run = Run(aws, faults)
    url = aws.ingest_queue.url
    for body in rng.sample(stream.bodies, len(stream.bodies)):
        aws.sqs.send(url, body)

    def shuffled(messages: list[QueuedMessage]) -> list[QueuedMessage]:
        return rng.sample(messages, len(messages))

    while aws.sqs.pending(url):
        run.rounds += 1
        assert run.rounds <= MAX_ROUNDS, "the queue did not drain: records stuck in a loop"
        now = aws.clock.now()
        pending = aws.sqs.pending(url)
        if not any(m.visible_at <= now for m in pending):
            aws.clock.advance_to(min(m.visible_at for m in pending))
            continue
        jobs = {}
        for _ in range(rng.randint(1, 3)):  # invocations in flight at once
            records = aws.sqs.receive(url, rng.randint(1, 10), shuffled)
            if not records:
                break
            invocation = Invocation(f"invocation-{len(run.invocations)}", records)
            run.invocations.append(invocation)
            faults.invocations[invocation.name] = invocation
            remaining = 500 if rng.random() < chaos.deadline else 10_000
            jobs[invocation.name] = lambda i=invocation, r=remaining: invoke(run, i, r)
        scheduler.run(jobs)
        for invocation in (run.invocations[-n] for n in range(len(jobs), 0, -1)):
            if invocation.unexpected is not None:
                raise invocation.unexpected
            if invocation.response is not None:
                # The event source mapping deletes what the function did not report failed.
                failed = {f["itemIdentifier"] for f in invocation.response["batchItemFailures"]}
                aws.sqs.delete(
                    url,
                    [r.receipt_handle for r in invocation.records if r.message_id not in failed],
                )
        aws.clock.advance(rng.choice([0.2, 0.5, 1.0, 2.0]))
    return run


# --------------------------------------------------------------------------- the checks


def check_deliveries(stream: Stream, run: Run) -> None:
    expected = {(e.interaction_id, e.dedup_key): e for e in stream.events}
    late: dict[tuple[str, str], bool] = {}
    event_ids: dict[tuple[str, str], str] = {}
    payloads: dict[tuple[str, str], str] = {}
    for consumer, deliveries in run.aws.consumer_messages().items():
        counts: Counter[tuple[str, str]] = Counter()
        first: dict[str, list[tuple[StreamEvent, bool]]] = defaultdict(list)
        for delivery in deliveries:
            message = delivery.json()
            key = (message["interaction_id"], dedup_key_of(message))
            assert key in expected, f"{consumer} got an event nobody sent: {key}"
            event = expected[key]
            # `late` is decided once: the same for every consumer and every retry.
            assert late.setdefault(key, message["late"]) is message["late"], key
            # The stable event id: a repeat (after a crash) or a retry of a partly failed
            # publish carries the id of the first delivery, also when it came back as a
            # provider re-send with another envelope id, so consumers can drop repeats.
            assert event_ids.setdefault(key, message["event_id"]) == message["event_id"], (
                f"{consumer} got {key} as {message['event_id']}, another consumer or an "
                f"earlier delivery as {event_ids[key]}"
            )
            # First one wins: a conflicting re-send never replaces the payload claimed first.
            payload = json.dumps(message["event"]["detail"], sort_keys=True)
            assert payloads.setdefault(key, payload) == payload, (consumer, key)
            assert delivery.attributes["late"]["StringValue"] == str(message["late"]).lower()
            assert delivery.attributes["interaction_id"]["StringValue"] == key[0]
            if consumer.endswith(".fifo"):
                assert delivery.group_id == key[0]
                assert delivery.dedup_id == message["event_id"]
            counts[key] += 1
            if counts[key] == 1:
                first[key[0]].append((event, message["late"]))
        # 1. Nothing lost.
        assert set(counts) == set(expected), f"{consumer} missed {set(expected) - set(counts)}"
        # 2. Once, unless a publish went unrecorded (crash, or DynamoDB gone for good).
        for (interaction, key), count in counts.items():
            allowed = 1 + run.unrecorded[(interaction, key, consumer)]
            assert count <= allowed, (
                f"{consumer} got {interaction}/{key} {count} times, from "
                + describe_publishers(run, consumer, interaction, key)
            )
        # 3. In order, within each interaction (re-sends after a crash do not reorder: the
        # first delivery of each event counts).
        for interaction, received in first.items():
            timely = [event.order_key for event, is_late in received if not is_late]
            assert timely == sorted(timely), f"{consumer}, {interaction}: {received}"
    # A late event is older than some other event of its interaction.
    for key, is_late in late.items():
        if is_late:
            event = expected[key]
            siblings = [e for e in stream.events if e.interaction_id == event.interaction_id]
            assert any(s.order_key > event.order_key for s in siblings), key


def describe_publishers(run: Run, consumer: str, interaction: str, key: str) -> str:
    """Who published one event to one consumer, for a failure message."""
    by_name = {i.name: i for i in run.invocations}
    lines = []
    for delivery in run.aws.consumer_messages()[consumer]:
        message = delivery.json()
        if (message["interaction_id"], dedup_key_of(message)) == (interaction, key):
            invocation = by_name[delivery.thread]
            lines.append(
                f"{invocation.name}: crashed {invocation.crashed_at}, settle failed "
                f"{invocation.settle_failed}, {len(invocation.records)} records, "
                f"response {invocation.response}"
            )
    return "\n".join(lines)


def check_quarantine(stream: Stream, run: Run) -> None:
    quarantined = {m.json()["raw_sha256"] for m in run.aws.quarantine_messages()}
    invalid = {hashlib.sha256(body.encode()).hexdigest() for body in stream.invalid}
    # 4. Every invalid record, and nothing else (a re-run after a crash may repeat one).
    assert quarantined == invalid


def check_tally(stream: Stream, run: Run, tally: InvocationTally) -> None:
    """5. Reconciliation, per telemetry's TALLY.

    Every attempt (a record handed to an invocation) is counted Received. A finished
    invocation decides each of its records once: Delivered (the first record of an event
    that reached every consumer), Duplicates (any other record of a delivered or stored
    event), Quarantined, or Retried (reported failed) — so per finished invocation
    Received = Delivered + Duplicates + Quarantined + Retried, and Retried is its
    batchItemFailures. A dead invocation acknowledges nothing (its counts so far are void;
    all its records come back). Over the run, every record is acknowledged exactly once:
        records on the queue = Delivered + Duplicates + Quarantined   (finished invocations)
        Quarantined = invalid records
        Delivered = valid events - those stored by an invocation that then died, or whose
                    settle DynamoDB refused for good (their records come back as duplicates)
    """
    by_name = {i.name: i for i in run.invocations}
    finished = Counter[str]()
    attempts = 0
    for invocation in run.invocations:
        counts = tally.by_invocation.get(invocation.name, Counter())
        attempts += len(invocation.records)
        if invocation.response is None:
            continue
        assert counts["Received"] == len(invocation.records)
        decided = counts["Delivered"] + counts["Duplicates"] + counts["Quarantined"]
        assert decided + counts["Retried"] == counts["Received"], (invocation.name, counts)
        assert counts["Retried"] == len(invocation.response["batchItemFailures"])
        finished.update(counts)
    assert sum(c["Received"] for c in tally.by_invocation.values()) == attempts
    assert finished["Delivered"] + finished["Duplicates"] + finished["Quarantined"] == len(
        stream.bodies
    )
    assert finished["Quarantined"] == len(stream.invalid)
    events_table = run.aws.settings.names.events_table
    stored_unacknowledged = 0
    for event in stream.events:
        writer = by_name[
            run.aws.dynamodb.writer_of(
                events_table, event_key(event.interaction_id, event.dedup_key)
            )
            or ""
        ]
        if writer.response is None or writer.settle_failed:
            stored_unacknowledged += 1
    assert finished["Delivered"] == len(stream.events) - stored_unacknowledged

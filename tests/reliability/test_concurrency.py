"""Invocations racing each other, against the real moto server.

Two invocations claiming one interaction at the same moment (the conditional write decides),
and two local runners (scripts/local_runner.py's SqsPoller, as two Lambda event source mapping
pollers) on one queue fed overlapping duplicates: every event reaches every consumer once, in
order per interaction except the events flagged late.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from typing import Any

from chalicelib.telemetry import TALLY
from scripts.local.runner import LocalContext
from tests.support.fakes import Call, Faults
from tests.support.helpers import sqs_lambda_event
from tests.support.reliability import (
    Stage,
    check_deliveries,
    event_key,
    inject,
    interactions,
    lifecycle,
    queue_depth,
    repeated,
    run_until_drained,
    stage_poller,
    unique,
)


class MarkRendezvous(Faults):
    """Holds each invocation right after its arrival marks on `interaction` landed (the
    UpdateItem took effect) until both have marked: both batches reached the relay before
    either could claim anything. The claims then race as they come."""

    def __init__(self, interaction: str) -> None:
        self.interaction = interaction
        self.barrier = threading.Barrier(2, timeout=10)
        self.marked = 0
        self.lock = threading.Lock()

    def after(self, call: Call) -> None:
        if call.operation != "UpdateItem" or call.params["Key"]["pk"]["S"] != self.interaction:
            return
        with self.lock:
            self.marked += 1
            if self.marked > 2:  # the race is over: later marks go straight through
                return
        self.barrier.wait()


def test_two_invocations_marking_one_interaction_at_once_deliver_each_event_once_in_order(
    stage: Stage, ingest: Callable[[dict[str, Any], Any], Any]
) -> None:
    """Simulates two invocations whose batches hold events of one interaction, one shared,
    reaching the relay at the same moment. Whoever claims first, the batch without the oldest
    event waits for it (its arrival mark holds its place), in its own invocation, and then
    delivers the rest: FIFO-like, nobody is late, nothing goes back to the queue."""
    (interaction,), (first, second, third) = interactions(1, 3)
    inject(stage.runtime, MarkRendezvous(interaction), ["dynamodb"])
    batches = {
        "a": sqs_lambda_event([first, second], stage.ingest_arn),
        "b": sqs_lambda_event([second, third], stage.ingest_arn),
    }
    responses: dict[str, dict[str, Any]] = {}

    def invoke(name: str) -> None:
        responses[name] = ingest(batches[name], LocalContext(f"ingest-{name}", 10))

    threads = [threading.Thread(target=invoke, args=(name,)) for name in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert responses == {"a": {"batchItemFailures": []}, "b": {"batchItemFailures": []}}
    deliveries = stage.deliveries()
    check_deliveries(deliveries, {event_key(e) for e in (first, second, third)})
    for messages in deliveries.values():
        assert [event_key(m["event"]) for m in messages] == [
            event_key(e) for e in (first, second, third)
        ]
        assert not any(m["late"] for m in messages)


def test_two_runners_on_one_queue_with_overlapping_duplicates_deliver_each_event_once_in_order(
    stage: Stage, ingest: Callable[[dict[str, Any], Any], Any]
) -> None:
    """Two event source mapping pollers (two batches in flight each) on the stage's ingest
    queue, fed every event twice plus provider re-sends under new envelope ids, shuffled."""
    rng = random.Random(11)
    prefix = unique("race")
    events = [
        event for n in range(20) for event in lifecycle(f"{prefix}-{n}", 5, provider_ids=n % 2 == 0)
    ]
    bodies = [json.dumps(event) for event in events for _ in range(2)]
    resent = [dict(event, id=f"resend-{event['id']}") for event in events[::10]]
    bodies += [json.dumps(event) for event in resent if "eventId" in event["detail"]]
    rng.shuffle(bodies)
    stage.send(bodies)

    runners = [
        stage_poller(stage, ingest, f"runner-{name}", concurrency=2, batching_window_seconds=0.2)
        for name in ("a", "b")
    ]
    print(f"drained in {run_until_drained(runners, stage.depth):.1f} s")
    stats = [runner.stats.as_dict() for runner in runners]
    print(f"{len(bodies)} records, {len(events)} events, runners: {stats}")
    assert all(s["batches"] > 0 for s in stats)  # both took part
    # Every record acknowledged; SQS (moto too, under concurrent receives) may hand a record
    # to two batches at once, and both acknowledge it: one delivered, one found a duplicate.
    assert sum(s["deleted"] for s in stats) >= len(bodies)
    deliveries = stage.deliveries()
    check_deliveries(
        deliveries,
        {event_key(event) for event in events},
        consumers=stage.runtime.settings.consumers,
    )
    assert sum(repeated(deliveries).values()) == 0
    assert queue_depth(stage.sqs, stage.dlq_url) == (0, 0)


def test_five_concurrent_invocations_without_faults_flag_few_events_late(
    stage: Stage, ingest: Callable[[dict[str, Any], Any], Any]
) -> None:
    """Five batches in flight at once, no faults, every interaction's events sent in order:
    every batch marks its events' arrival before claiming, so a newer event claimed by one
    invocation waits for an older one another invocation received first. Prints the late
    count (an event is late only when its arrival mark landed after a newer event's claim)
    and what the marks cost (writes per event)."""
    prefix = unique("fifo")
    events = [event for n in range(20) for event in lifecycle(f"{prefix}-{n}", 5)]
    stage.send(events)
    before = TALLY.snapshot()
    run_until_drained([stage_poller(stage, ingest, "runner-five", concurrency=5)], stage.depth)

    deliveries = stage.deliveries()
    check_deliveries(
        deliveries, {event_key(e) for e in events}, consumers=stage.runtime.settings.consumers
    )
    assert sum(repeated(deliveries).values()) == 0
    after = TALLY.snapshot()
    spent = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    late = sum(m["late"] for m in next(iter(deliveries.values())))
    bounced = spent.get("Waiting", 0) + spent.get("ClaimRefused", 0)
    marks = spent.get("ArrivalWrites", 0)
    print(
        f"\n{len(events)} events, 5 invocations at once: {late} late, {bounced} bounced "
        f"records, {marks} arrival writes ({marks / len(events):.2f} per event)"
    )

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
import time
from collections.abc import Callable
from typing import Any

from chalicelib.telemetry import TALLY
from scripts.local.runner import LocalContext, SqsPoller
from tests.support.fakes import Call, Faults
from tests.support.helpers import sqs_lambda_event
from tests.support.reliability import (
    REGION,
    Stage,
    check_deliveries,
    event_key,
    inject,
    interactions,
    lifecycle,
    queue_depth,
    repeated,
    unique,
)


class ClaimRendezvous(Faults):
    """Holds each claim (PutItem) of `interaction` until both invocations have read the ledger
    and reached their claim, then lets them write one right after the other.

    moto's server does not make a conditional write atomic against a concurrent one (DynamoDB
    does), so the second writer goes a moment after the first; both wrote from the same read.
    """

    def __init__(self, interaction: str) -> None:
        self.interaction = interaction
        self.barrier = threading.Barrier(2, timeout=10)
        self.held = 0
        self.lock = threading.Lock()

    def before(self, call: Call) -> None:
        if call.operation != "PutItem" or call.params["Item"]["pk"]["S"] != self.interaction:
            return
        with self.lock:
            self.held += 1
            if self.held > 2:  # the race is over: later claims go straight through
                return
        if self.barrier.wait() != 0:  # both have read the ledger and are about to claim
            time.sleep(0.05)


def test_two_invocations_claiming_one_interaction_at_once_deliver_each_event_once(
    stage: Stage, ingest: Callable[[dict[str, Any], Any], Any]
) -> None:
    """Simulates two invocations whose batches hold events of one interaction, one shared,
    reading the ledger at the same time (the conditional-check race)."""
    (interaction,), (first, second, third) = interactions(1, 3)
    inject(stage.runtime, ClaimRendezvous(interaction), ["dynamodb"])
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

    # One claim won; the other invocation published nothing and reported both its records.
    failed = {name: r["batchItemFailures"] for name, r in responses.items()}
    assert sorted(len(items) for items in failed.values()) == [0, 2]
    loser = next(name for name, items in failed.items() if items)
    winner_events = [first, second] if loser == "b" else [second, third]
    raced = stage.deliveries()
    assert all(
        {event_key(m["event"]) for m in messages} == {event_key(e) for e in winner_events}
        for messages in raced.values()
    )

    # The loser's records come back (receive count 2): one is a duplicate by now.
    retry = dict(batches[loser], Records=[dict(r) for r in batches[loser]["Records"]])
    for record in retry["Records"]:
        record["attributes"] = {"ApproximateReceiveCount": "2"}
    assert ingest(retry, LocalContext("ingest-retry", 10)) == {"batchItemFailures": []}

    retried = stage.deliveries()
    deliveries = {c: raced[c] + retried[c] for c in raced}
    check_deliveries(deliveries, {event_key(e) for e in (first, second, third)})
    # Had the first event lost the race, it was claimed after the third: delivered, as late.
    assert all(messages[-1]["late"] is (loser == "a") for messages in deliveries.values())


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
        SqsPoller(
            stage.sqs,
            name=f"runner-{name}",
            queue_url=stage.ingest_url,
            queue_arn=stage.ingest_arn,
            region=REGION,
            handler=ingest,
            batch_size=10,
            batching_window_seconds=0.2,
            timeout_seconds=10,
            concurrency=2,
        )
        for name in ("a", "b")
    ]
    started = time.monotonic()
    for runner in runners:
        runner.start()
    try:
        while stage.depth() and time.monotonic() - started < 60:
            time.sleep(0.25)
    finally:
        for runner in runners:
            runner.stop()
    assert stage.depth() == 0, "the runners did not drain the queue in 60 s"

    print(f"drained in {time.monotonic() - started:.1f} s")
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
    records that could not be claimed at once (lease busy, claim refused, an older event
    pending) keep their place with an arrival mark, so newer events wait for them. Prints the
    late count and what the marks cost (conditional writes per bounced record)."""
    prefix = unique("fifo")
    events = [event for n in range(20) for event in lifecycle(f"{prefix}-{n}", 5)]
    stage.send(events)
    before = TALLY.snapshot()
    poller = SqsPoller(
        stage.sqs,
        name="runner-five",
        queue_url=stage.ingest_url,
        queue_arn=stage.ingest_arn,
        region=REGION,
        handler=ingest,
        batch_size=10,
        batching_window_seconds=0,
        timeout_seconds=10,
        concurrency=5,
    )
    started = time.monotonic()
    poller.start()
    try:
        while stage.depth() and time.monotonic() - started < 120:
            time.sleep(0.25)
    finally:
        poller.stop()
    assert stage.depth() == 0, "the runner did not drain the queue in 120 s"

    deliveries = stage.deliveries()
    check_deliveries(
        deliveries, {event_key(e) for e in events}, consumers=stage.runtime.settings.consumers
    )
    assert sum(repeated(deliveries).values()) == 0
    after = TALLY.snapshot()
    spent = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    late = sum(m["late"] for m in next(iter(deliveries.values())))
    bounced = spent.get("Waiting", 0) + spent.get("ClaimRefused", 0)
    print(
        f"\n{len(events)} events, 5 invocations at once: {late} late, {bounced} bounced "
        f"records, {spent.get('ArrivalWrites', 0)} arrival writes "
        f"({spent.get('ArrivalWrites', 0) / max(1, bounced):.2f} per bounced record)"
    )

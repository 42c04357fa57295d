"""A poison record: retried until the queue's redrive policy sends it to the DLQ, then moved
back with `python -m scripts.dlq redrive` once the cause is fixed, and delivered.

Against the real moto server, on the stage's own queues as provisioned (maxReceiveCount 30) with
the retry backoff at 0, so the twelve receives take a second, not minutes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from chalicelib.timing import MAX_RECEIVE_COUNT
from scripts.operations import dlq
from tests.support.reliability import (
    ConsumerRefuses,
    EventSourceMapping,
    Stage,
    check_deliveries,
    event_key,
    inject,
    interactions,
    queue_depth,
)


def test_a_poison_record_goes_to_the_dlq_and_comes_back_with_redrive_after_the_fix(
    stage: Stage, capsys: pytest.CaptureFixture[str]
) -> None:
    import app as app_module

    runtime = stage.runtime
    (poisoned, *_), events = interactions(3, 2)
    poison = [e for e in events if e["detail"]["interaction.id"] == poisoned]
    faults = ConsumerRefuses(runtime.consumer_topics["crm-updater"], poisoned)
    restore = inject(runtime, faults, ["sns"])
    mapping = EventSourceMapping(stage, app_module.app.handler_map["ingest"])
    stage.send(events)

    mapping.drain(max_batches=3 * MAX_RECEIVE_COUNT)

    # Every receive of the poison records failed them; the redrive policy moved them after the
    # last allowed receive. Nothing else was held back or lost.
    assert faults.refused >= MAX_RECEIVE_COUNT
    assert sorted(m.body for m in dlq.peek_messages(stage.sqs, stage.dlq_url)) == sorted(
        json.dumps(e) for e in poison
    )
    before = stage.deliveries()
    assert {event_key(m["event"]) for m in before["crm-updater"]} == {
        event_key(e) for e in events if e not in poison
    }
    # The other consumers got the poison events once, on the first try; retries did not repeat.
    check_deliveries(
        {c: m for c, m in before.items() if c != "crm-updater"}, {event_key(e) for e in events}
    )

    faults.fixed = True
    capsys.readouterr()
    assert dlq.main(["redrive", "--stage", runtime.settings.stage]) == 0
    assert f"moved {len(poison)} message(s)" in capsys.readouterr().out
    assert queue_depth(stage.sqs, stage.dlq_url) == (0, 0)

    mapping.drain()
    restore()
    after = stage.deliveries()
    # Only the consumer that missed them gets the poison events now; every consumer has every
    # event once, in order.
    assert all(after[c] == [] for c in after if c != "crm-updater")
    check_deliveries(
        {c: before[c] + after[c] for c in before},
        {event_key(e) for e in events},
        consumers=runtime.settings.consumers,
    )
    assert stage.depth() == 0 and stage.dlq_depth() == 0


def test_a_record_that_fails_a_few_times_never_reaches_the_dlq(
    stage: Stage, ingest: Callable[[dict[str, Any], Any], Any]
) -> None:
    """The other side of the same policy: a transient failure (here, the consumer refusing for
    three receives) is retried well inside maxReceiveCount and delivered."""
    runtime = stage.runtime
    (flaky,), events = interactions(1, 2)
    faults = ConsumerRefuses(runtime.consumer_topics["analytics-sink"], flaky)
    inject(runtime, faults, ["sns"])
    mapping = EventSourceMapping(stage, ingest)
    stage.send(events)

    for _ in range(3):
        mapping.step()
    faults.fixed = True
    mapping.drain()

    assert faults.refused > 0
    assert stage.dlq_depth() == 0
    check_deliveries(stage.deliveries(), {event_key(e) for e in events})

"""One consumer's outage holds back newer events of an interaction at that consumer only.

Against the real moto server, with the stage's retries backing off 3 s (the other reliability
modules retry at once), so an event's failed record is still out of sight when the next event
of its interaction arrives, as it is on a deployed stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chalicelib.runtime import Runtime
from tests.support.reliability import (
    ConsumerRefuses,
    EventSourceMapping,
    Stage,
    check_deliveries,
    event_key,
    inject,
    interactions,
    provisioned_stage,
)


@pytest.fixture(scope="module")
def shared_runtime(aws_endpoint: str) -> Iterator[Runtime]:
    with provisioned_stage(
        RELAY_BACKOFF_BASE_SECONDS="3", RELAY_BACKOFF_MAX_SECONDS="3"
    ) as runtime:
        yield runtime


def test_a_consumers_outage_holds_newer_events_back_at_that_consumer_only(
    stage: Stage, ingest: Callable[[dict[str, Any], Any], Any]
) -> None:
    """One consumer's topic refuses an interaction while its events arrive one batch after
    another: the healthy consumers get each event as it comes, in order; the failing one gets
    them all, in order, once it is fixed. (Order per interaction holds at each consumer; one
    consumer's outage does not stop the others.)"""
    runtime = stage.runtime
    (interaction,), events = interactions(1, 3)
    faults = ConsumerRefuses(runtime.consumer_topics["crm-updater"], interaction)
    inject(runtime, faults, ["sns"])
    mapping = EventSourceMapping(stage, ingest)
    keys = [event_key(e) for e in events]

    # Each newer event arrives while the older ones miss crm-updater and their records are
    # backing off (so each batch holds one event: retried with it, an older event would be
    # published in the same batch, and nothing would wait).
    for event in events:
        stage.send([event])
        mapping.step()
    during = stage.deliveries()

    assert faults.refused >= 1  # the first event; the newer ones are not sent there yet
    assert during["crm-updater"] == []
    for consumer in ("analytics-sink", "agent-dashboard"):
        assert [event_key(m["event"]) for m in during[consumer]] == keys, consumer
        assert not any(m["late"] for m in during[consumer])

    faults.fixed = True
    mapping.drain(max_batches=2000)  # idle steps pause 50 ms: up to 100 s of backoffs
    after = stage.deliveries()
    assert [event_key(m["event"]) for m in after["crm-updater"]] == keys
    assert after["analytics-sink"] == [] and after["agent-dashboard"] == []
    check_deliveries(
        {c: during[c] + after[c] for c in during}, set(keys), consumers=runtime.settings.consumers
    )
    assert stage.depth() == 0 and stage.dlq_depth() == 0

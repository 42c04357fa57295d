"""Genesys transcription streams (one CorrelationId per conversation, provider re-sends
under new envelope ids, EventBridge re-deliveries) through three concurrent invocations
against the real moto server: every notification reaches every consumer once, in time order
per conversation except the ones flagged late, and nothing is left waiting."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from random import Random
from typing import Any

import pytest

from chalicelib.runtime import Runtime
from scripts.traffic.simulate import random_uuid
from tests.support.genesys_streams import content_key, transcription_streams
from tests.support.helpers import drain_queue
from tests.support.reliability import Stage, provisioned_stage, run_until_drained, stage_poller


@pytest.fixture(scope="module")
def shared_runtime(aws_endpoint: str) -> Iterator[Runtime]:
    """This module's stage backs failed records off as a deployed one does (1 s, doubling up
    to 4 s; the other reliability modules retry at once): newer notifications wait for older
    ones still further back in the queue, and each wait is a receive of the redrive limit's.
    Retried at once, a long-shuffled conversation would spend that limit in seconds."""
    with provisioned_stage(
        RELAY_BATCH_FAILURE_MODE="report",
        RELAY_BACKOFF_BASE_SECONDS="1",
        RELAY_BACKOFF_MAX_SECONDS="4",
    ) as runtime:
        yield runtime


def test_transcription_streams_with_resends_drain_through_concurrent_invocations(
    stage: Stage, ingest: Callable[[dict[str, Any], Any], Any]
) -> None:
    rng = Random(11)
    notifications = transcription_streams(rng, conversations=5, per_conversation=30)
    rng.shuffle(notifications)
    bodies = [json.dumps(n) for n in notifications]
    bodies += [json.dumps(n) for n in rng.sample(notifications, 30)]  # re-deliveries
    bodies += [json.dumps(dict(n, id=random_uuid(rng))) for n in rng.sample(notifications, 15)]
    rng.shuffle(bodies)
    stage.send(bodies)
    run_until_drained([stage_poller(stage, ingest, "runner-genesys", concurrency=3)], stage.depth)

    # A newer notification waits for every older one received before it was published
    # (FIFO-like), in its invocation while another one delivers that older notification: on a
    # fully shuffled stream no wait spends the redrive limit's receives, so nothing is in the DLQ.
    dead = [content_key(json.loads(m["Body"])) for m in drain_queue(stage.sqs, stage.dlq_url)]
    assert dead == [], f"{len(dead)} dead-lettered while waiting"
    expected = {content_key(n) for n in notifications}
    late = 0
    for consumer, messages in stage.deliveries().items():
        keys = [content_key(m["event"]) for m in messages]
        assert len(keys) == len(set(keys)), f"{consumer} got a notification twice"
        assert set(keys) == expected, consumer  # nothing lost, nothing else
        newest: dict[str, str] = {}
        for message in messages:
            interaction, at = message["interaction_id"], message["occurred_at"]
            before = newest.get(interaction)
            # In time order per conversation, except the ones flagged late (older than one
            # sent before them).
            assert message["late"] is (before is not None and at < before), consumer
            newest[interaction] = max(at, before or at)
        late = sum(m["late"] for m in messages)
    assert stage.quarantined() == []
    print(f"\n{len(expected)} notifications, {len(bodies)} records: {late} late")

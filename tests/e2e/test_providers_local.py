"""Genesys transcription streams and Amazon Connect contact chains through the local stack.

Run as a user runs it: one stack for the module, events put on its buses with PutEvents (the
Genesys ones on the stage's bus, where the Genesys rule stands in for the partner bus's, which
moto cannot host; the Connect ones on the DEFAULT bus, where AWS publishes them), and
EventBridge's at-least-once re-deliveries reproduced by sending the same envelope, id and all,
to the ingest queue. Only stack.json, the buses and the queues are used. Waits poll for counts
with generous deadlines; nothing depends on timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from random import Random
from typing import Any

import pytest

from scripts.traffic.connect import ConnectTrafficGenerator, without_timestamps
from scripts.traffic.simulate import TrafficProfile, random_uuid
from tests.support.genesys_streams import content_key, transcription_streams
from tests.support.local_stack import PROJECT, drain, running_stack
from tests.support.stack_clients import (
    aws,
    dead_letters,
    deliveries_of,
    put_on_bus,
    redeliver,
)

pytestmark = pytest.mark.slow(seconds=80)

# The Amazon Connect profile's lifecycle rank, from its contract: the tie-breaker after time.
LIFECYCLE_RANK = {
    "INITIATED": 1,
    "CONNECTED_TO_SYSTEM": 2,
    "QUEUED": 3,
    "CONNECTED_TO_AGENT": 4,
    "DISCONNECTED": 5,
    "COMPLETED": 6,
}
WAIT_SECONDS = 240  # a deadline, not a pause: the waits return as soon as the counts are in


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with running_stack(tmp_path_factory.mktemp("providers-stack"), duration=420) as (stack, _):
        yield stack


def waves(events: list[dict[str, Any]], count: int) -> list[list[dict[str, Any]]]:
    size = -(-len(events) // count)
    return [events[start : start + size] for start in range(0, len(events), size)]


def assert_in_order_unless_late(messages: list[dict[str, Any]], order_key: Any, label: str) -> None:
    """Per interaction, in arrival order: a message not flagged late is not older than any
    message before it, and a message flagged late is older than one before it."""
    newest: dict[str, Any] = {}
    for message in messages:
        key, interaction = order_key(message), message["interaction_id"]
        before = newest.get(interaction)
        if message["late"]:
            assert before is not None and key < before, (label, message["event_id"])
        else:
            assert before is None or key > before, (label, interaction, key, before)
        newest[interaction] = key if before is None else max(key, before)


def test_genesys_transcription_streams_sharing_correlation_ids_are_each_delivered_once(
    local_stack: dict[str, Any],
) -> None:
    stack, rng = local_stack, Random(11)
    notifications = transcription_streams(rng, conversations=5, per_conversation=30)
    correlation_ids = {e["detail"]["metadata"]["CorrelationId"] for e in notifications}
    assert len(notifications) == 150 and len(correlation_ids) == 5
    rng.shuffle(notifications)

    # In three waves, so duplicates interleave with notifications not yet sent: 20 % come
    # again under the same EventBridge id (EventBridge re-delivering), 10 % are re-sent by
    # Genesys (the same notification, a new EventBridge id).
    for wave in waves(notifications, 3):
        delivered = put_on_bus(stack, stack["event_bus_name"], wave)
        redeliver(stack, rng.sample(delivered, len(wave) // 5))
        put_on_bus(stack, stack["event_bus_name"], rng.sample(wave, len(wave) // 10))

    expected = {content_key(e): e for e in notifications}
    assert len(expected) == 150
    for consumer, messages in deliveries_of(stack, 150, WAIT_SECONDS).items():
        keys = [content_key(m["event"]) for m in messages]
        assert len(keys) == 150, f"{consumer} got {len(keys)}"
        assert set(keys) == set(expected), consumer
        for message in messages:
            body = expected[content_key(message["event"])]["detail"]["eventBody"]
            assert message["interaction_id"] == body["conversationId"]
            assert message["occurred_at"] == body["eventTime"]  # eventTime, not the envelope's
            assert message["state"] == "transcription" and message["stage"] is None
        assert_in_order_unless_late(messages, lambda m: m["occurred_at"], consumer)
    assert drain(aws(stack, "sqs"), stack["quarantine"]["queue_url"], 1, 1) == []
    assert dead_letters(stack) == 0


def connect_order_key(message: dict[str, Any]) -> tuple[str, int, str]:
    """The Connect profile's order: time, then lifecycle rank (other types first), then id."""
    rank = LIFECYCLE_RANK.get(message["state"], 0)
    return (message["occurred_at"], rank, message["event_id"])


def test_amazon_connect_contact_chains_on_the_default_bus_are_delivered_once_in_order(
    local_stack: dict[str, Any],
) -> None:
    stack, rng = local_stack, Random(5)
    profile = TrafficProfile(
        duplicate_ratio=0.0,
        reorder_ratio=0.0,
        invalid_ratio=0.0,
        transfer_ratio=0.5,
        concurrent_interactions=6,
    )
    start = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    generated = [item.event for item in ConnectTrafficGenerator(profile, 3, start).take(90)]
    transferred = [e for e in generated if e["detail"].get("initiationMethod") == "TRANSFER"]
    assert transferred, "the seed must give at least one transfer"
    # A DISCONNECTED with no timestamp at all, as live ones come: ordered by `time`, then rank.
    bare = next(e for e in generated if e["detail"]["eventType"] == "DISCONNECTED")
    bare["detail"] = without_timestamps(bare["detail"])
    no_contact = {**generated[0], "id": random_uuid(rng)}
    no_contact["detail"] = {k: v for k, v in generated[0]["detail"].items() if k != "contactId"}
    chains = {e["detail"].get("initialContactId") or e["detail"]["contactId"] for e in generated}
    events = [*generated, no_contact]
    rng.shuffle(events)

    delivered: list[dict[str, Any]] = []
    for wave in waves(events, 3):
        sent = put_on_bus(stack, stack["default_event_bus_name"], wave)
        # EventBridge delivers some twice, under the same id (the invalid one only once: each
        # copy of an invalid event is quarantined on its own).
        contact_events = [e for e in sent if "contactId" in e["detail"]]
        redeliver(stack, rng.sample(contact_events, len(wave) // 5))
        delivered += sent
    valid = {e["id"]: e for e in delivered if "contactId" in e["detail"]}
    assert len(valid) == len(generated)

    for consumer, messages in deliveries_of(stack, len(valid), WAIT_SECONDS).items():
        ids = [m["event_id"] for m in messages]
        assert len(ids) == len(valid) and set(ids) == set(valid), consumer
        for message in messages:
            detail = valid[message["event_id"]]["detail"]
            assert message["interaction_id"] == (
                detail.get("initialContactId") or detail["contactId"]
            )
            assert message["state"] == detail["eventType"]
            assert message["event"]["detail"] == detail
        # One interaction per transfer chain.
        assert {m["interaction_id"] for m in messages} == chains, consumer
        assert_in_order_unless_late(messages, connect_order_key, consumer)
        bare_delivered = next(m for m in messages if m["event"]["detail"] == bare["detail"])
        assert bare_delivered["occurred_at"] == bare_delivered["event"]["time"][:19] + ".000Z"

    quarantined = drain(aws(stack, "sqs"), stack["quarantine"]["queue_url"], 1, WAIT_SECONDS)
    assert len(quarantined) == 1
    assert quarantined[0]["reason"] == "invalid"
    assert "detail.contactId" in quarantined[0]["errors"], quarantined[0]["errors"]
    assert json.loads(quarantined[0]["raw"])["detail"]["eventType"] == "INITIATED"
    assert dead_letters(stack) == 0


def test_simulate_sends_the_provider_mix_to_the_stacks_buses_and_its_counts_reconcile(
    local_stack: dict[str, Any], tmp_path: Path
) -> None:
    stack_file = tmp_path / "stack.json"
    stack_file.write_text(json.dumps(local_stack))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RELAY_"))}
    command = [sys.executable, "-m", "scripts.simulate", "--stack", str(stack_file), "--json"]
    command += ["--provider", "mix", "--count", "80", "--rate", "40", "--seed", "8"]

    run = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)

    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(run.stdout)
    assert summary["sent"] == 80 and summary["failed"] == []
    # Every duplicate the mix sends through PutEvents is recognisable by its provider's key
    # (CXone eventId, Genesys content), so each consumer gets each distinct valid event once.
    for consumer, messages in deliveries_of(local_stack, summary["valid"], WAIT_SECONDS).items():
        assert len(messages) == summary["valid"], consumer
        sources = {m["source"].split("/")[0] for m in messages}
        assert sources == {"com.nice.cxone.interactions", "aws.partner", "aws.connect"}
    quarantined = drain(aws(local_stack, "sqs"), local_stack["quarantine"]["queue_url"], 80, 5)
    assert len(quarantined) == summary["invalid"]

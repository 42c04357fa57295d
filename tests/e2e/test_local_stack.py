"""The local stack as a user runs it: a subprocess, its stack.json, events put on its bus."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

from tests.support.helpers import cxone_event
from tests.support.local_stack import drain, running_stack

pytestmark = pytest.mark.slow
CONTRACT_FIELDS = {
    "aws_endpoint_url",
    "region",
    "event_bus_name",
    "event_source",
    "ingest_queue_url",
    "ingest_dlq_url",
    "consumers",
    "quarantine",
    "tables",
    "api_url",
}


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[tuple[dict, subprocess.Popen]]:
    with running_stack(tmp_path) as (stack, process):
        yield stack, process


def test_events_put_on_the_bus_reach_every_consumer_and_quarantine(local_stack):
    stack, process = local_stack
    assert set(stack) >= CONTRACT_FIELDS
    assert set(stack["consumers"]) == {"analytics-sink", "crm-updater", "agent-dashboard"}
    session = boto3.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name=stack["region"]
    )
    events = session.client("events", endpoint_url=stack["aws_endpoint_url"])
    sqs = session.client("sqs", endpoint_url=stack["aws_endpoint_url"])
    sent = [cxone_event("int-e2e-1", stage, n) for n, stage in enumerate(["Queued", "Offered"])]
    broken = cxone_event("int-e2e-1", "Escalated", 7)
    entries = [
        {
            "Source": e["source"],
            "DetailType": e["detail-type"],
            "Detail": json.dumps(e["detail"]),
            "EventBusName": stack["event_bus_name"],
        }
        for e in [*sent, broken]
    ]
    assert events.put_events(Entries=entries)["FailedEntryCount"] == 0

    for consumer, where in stack["consumers"].items():
        bodies = drain(sqs, where["queue_url"], 2, 45)
        assert sorted(b["stage"] for b in bodies) == ["Offered", "Queued"], consumer
        assert all(b["interaction_id"] == "int-e2e-1" for b in bodies)
        # The two entries may reach ingest in separate batches, the newer first: then the
        # older is delivered after it, flagged late. Events not flagged late are in order.
        in_order = [b["sequence"] for b in bodies if not b["late"]]
        assert in_order == sorted(in_order) and bodies[-1]["late"] is (len(in_order) == 1)
    # The REST API answers from the store the pipeline wrote: timeline and time window.
    # Consumers can see a message before the handler stored it (publish, then store): poll.
    deadline = time.monotonic() + 20
    while True:
        timeline = requests.get(f"{stack['api_url']}/interactions/int-e2e-1/events", timeout=10)
        assert timeline.status_code == 200
        if len(timeline.json()["events"]) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [e["stage"] for e in timeline.json()["events"]] == ["Queued", "Offered"]
    listing = requests.get(
        f"{stack['api_url']}/replay",
        params={"since": "2026-11-29T09:00:00Z", "until": "2026-11-29T10:00:00Z"},
        timeout=10,
    )
    assert listing.status_code == 200
    assert {e["event_id"] for e in listing.json()["events"]} >= {
        e["event_id"] for e in timeline.json()["events"]
    }
    quarantined = drain(sqs, stack["quarantine"]["queue_url"], 1, 30)
    assert quarantined[0]["reason"] == "invalid"
    assert "detail.stage" in quarantined[0]["errors"]

    process.send_signal(signal.SIGINT)
    assert process.wait(45) == 0

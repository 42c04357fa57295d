"""The local stack's own simulated traffic: the three providers, mixed, and a summary that
reconciles. Run as a user runs it (`make run`), in a subprocess; only its stack.json, its
subscriber queues and its summary.json are read.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.support.local_stack import drain, running_stack
from tests.support.stack_clients import aws

pytestmark = pytest.mark.slow


def provider_of(source: str) -> str:
    if source == "aws.connect":
        return "connect"
    return "genesys" if source.startswith("aws.partner/genesys.com/cloud/") else "cxone"


def test_the_default_traffic_mixes_the_three_providers_and_its_summary_adds_up(
    tmp_path: Path,
) -> None:
    # --keep-deliveries: the stack leaves its subscriber queues to this test.
    traffic = ["--rate", "5", "--keep-deliveries"]
    with running_stack(tmp_path, duration=600, traffic_args=traffic) as (stack, process):
        sqs = aws(stack, "sqs")
        queue = stack["consumers"]["analytics-sink"]["queue_url"]
        seen: set[str] = set()
        deadline = time.monotonic() + 180  # a deadline, not a pause
        while seen != {"cxone", "genesys", "connect"} and time.monotonic() < deadline:
            seen |= {provider_of(body["source"]) for body in drain(sqs, queue, 10, 2)}
        assert seen == {"cxone", "genesys", "connect"}
        process.send_signal(signal.SIGINT)
        assert process.wait(120) == 0

    summary = json.loads((tmp_path / "summary.json").read_text())
    sent, tally, queues = summary["sent"], summary["tally"], summary["queues"]
    assert sent["send_failures"] == 0
    assert sent["sent"] == sent["valid"] + sent["duplicate"] + sent["invalid"] > 0
    # Every record sent is delivered (the first copy of an event), dropped as a duplicate,
    # quarantined, or still waiting (backlog, in flight, DLQ) when the stack stopped.
    waiting = queues["ingest_backlog"] + queues["in_flight"] + queues["dlq_depth"]
    handled = tally.get("Duplicates", 0) + tally.get("Quarantined", 0) + waiting
    for consumer in stack["consumers"]:
        assert sent["sent"] == tally.get(f"delivered:{consumer}", 0) + handled, (consumer, summary)

"""End-to-end tests: the local stack as a user runs it, in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.environment import free_port
from tests.support.message_schemas import check_relay_message

PROJECT = Path(__file__).resolve().parents[2]


def wait_for(path: Path, process: subprocess.Popen, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"local stack exited early: {process.stdout.read()}")
        if path.exists():
            return json.loads(path.read_text())
        time.sleep(0.5)
    raise AssertionError("stack.json never appeared")


@contextmanager
def running_stack(
    state_dir: Path, duration: int = 120, traffic_args: Sequence[str] | None = None
) -> Iterator[tuple[dict[str, Any], subprocess.Popen]]:
    """`python -m scripts.local_stack --no-traffic` on free ports; its stack.json and process.
    With `traffic_args` (e.g. ["--rate", "5"]) it runs its simulated traffic instead.

    Started without the test session's AWS_/RELAY_ variables, as on a user's machine; stopped
    with Ctrl-C (SIGINT) if the test has not stopped it already.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RELAY_"))}
    traffic = ["--no-traffic"] if traffic_args is None else list(traffic_args)
    command = [sys.executable, "-m", "scripts.local_stack", *traffic]
    command += ["--duration", str(duration), "--api-port", str(free_port())]
    command += ["--state-dir", str(state_dir)]
    process = subprocess.Popen(
        command, cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield wait_for(state_dir / "stack.json", process, 90), process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def drain(sqs: Any, url: str, want: int, seconds: float) -> list[dict[str, Any]]:
    """Up to `want` message bodies from a queue within `seconds`, deleted as read; delivered
    and quarantine messages checked against their schemas."""
    bodies: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while len(bodies) < want and time.monotonic() < deadline:
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in response.get("Messages", []):
            bodies.append(check_relay_message(json.loads(message["Body"])))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies

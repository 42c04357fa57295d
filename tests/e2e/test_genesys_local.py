"""Genesys Cloud samples and signed pushes through the local stack, run as a user runs it.

moto cannot host a partner bus (a '/' in a bus name breaks its rules), so the samples go on the
stage's custom bus with PutEvents, where the Genesys rule (source prefix
aws.partner/genesys.com/cloud/) routes them to the ingest queue, as the partner bus's rule does
on AWS. Nothing here reads the stack's internals: only stack.json, the bus, the queues and the
HTTP API.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib.push.signing import signed_headers
from tests.support.helpers import DELIVERED_FIELDS, cxone_event
from tests.support.local_stack import PROJECT, drain, running_stack
from tests.support.stack_clients import aws, dead_letters, put_on_bus, wait_until_ingest_is_idle

pytestmark = pytest.mark.slow
SAMPLES = PROJECT / "tests" / "fixtures" / "genesys"
# The two chat customer.end samples share CorrelationId and topicName but not their bodies:
# two distinct notifications, both delivered (Genesys reuses CorrelationId across a session).
CHAT_END = "conversation.customer.end.chat.json"
CHAT_END_OTHER = "conversation.customer.end.chat-no-external-contact.json"
RFC3339_MILLIS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def uuid_of(tag: str, number: int) -> str:
    return f"{tag}-0000-4000-8000-{number:012x}"


CONVERSATION, USER, OAUTH_CLIENT = "c0c0c0c0", "a5a5a5a5", "0c1e0c1e"
# The Genesys Cloud profile contract applied by hand: (interaction_id, state, stage, occurred_at).
EXPECTED: dict[str, tuple[str, str, str | None, str]] = {
    "audits.OAuthClient.json": (
        uuid_of(OAUTH_CLIENT, 1),
        "OAuthClient",
        None,
        "2021-05-31T09:49:25.000Z",
    ),
    "audits.UserPresence.json": (
        uuid_of(USER, 2),
        "UserPresence",
        None,
        "2021-06-25T15:11:52.000Z",
    ),
    "conversation.acd.end.json": (
        uuid_of(CONVERSATION, 1),
        "acd.end",
        "Offered",
        "2025-12-12T15:04:25.126Z",
    ),
    "conversation.acd.start.json": (
        uuid_of(CONVERSATION, 1),
        "acd.start",
        "Queued",
        "2025-12-12T15:03:45.452Z",
    ),
    "conversation.acw.json": (
        uuid_of(CONVERSATION, 2),
        "acw",
        "WrapUp",
        "2025-12-12T15:15:21.657Z",
    ),
    CHAT_END: (
        uuid_of(CONVERSATION, 6),
        "customer.end",
        "Closed",
        "2022-04-06T09:31:44.949Z",
    ),
    CHAT_END_OTHER: (
        uuid_of(CONVERSATION, 6),
        "customer.end",
        "Closed",
        "2022-04-06T09:31:44.949Z",
    ),
    "conversation.customer.end.json": (
        uuid_of(CONVERSATION, 3),
        "customer.end",
        "Closed",
        "2025-12-12T15:01:53.383Z",
    ),
    "conversation.customer.start.json": (
        uuid_of(CONVERSATION, 6),
        "customer.start",
        None,
        "2022-04-06T09:30:44.949Z",
    ),
    "conversation.flow.end.json": (
        uuid_of(CONVERSATION, 4),
        "flow.end",
        None,
        "2025-12-12T15:00:30.042Z",
    ),
    "conversation.flow.outcome.json": (
        uuid_of(CONVERSATION, 5),
        "flow.outcome",
        None,
        "2025-12-12T15:02:30.107Z",
    ),
    "conversation.user.end.json": (
        uuid_of(CONVERSATION, 2),
        "user.end",
        None,
        "2025-12-12T15:15:07.657Z",
    ),
    "conversation.user.start.json": (
        uuid_of(CONVERSATION, 2),
        "user.start",
        "Connected",
        "2025-12-12T15:06:21.279Z",
    ),
    "conversations.transcription.json": (
        uuid_of(CONVERSATION, 7),
        "transcription",
        None,
        "2026-03-19T22:04:48.128Z",
    ),
    "users.presence.json": (uuid_of(USER, 1), "presence", None, "2025-12-12T14:53:20.312Z"),
    "users.routingStatus.json": (
        uuid_of(USER, 1),
        "routingStatus",
        None,
        "2025-12-12T15:06:21.591Z",
    ),
}


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with running_stack(tmp_path_factory.mktemp("genesys-stack"), duration=240) as (stack, _):
        yield stack


def dedup_key(event: dict[str, Any]) -> str:
    """The Genesys profile's key by hand: topicName and the SHA-256 of the body's canonical JSON."""
    detail = event["detail"]
    body = json.dumps(detail["eventBody"], sort_keys=True, separators=(",", ":"))
    return f"{detail['topicName']}|{hashlib.sha256(body.encode()).hexdigest()}"


def test_genesys_samples_reach_every_consumer_and_malformed_ones_are_quarantined(
    local_stack: dict[str, Any],
) -> None:
    stack = local_stack
    samples = {path.name: json.loads(path.read_text()) for path in sorted(SAMPLES.glob("*.json"))}
    assert set(samples) == set(EXPECTED), "a sample without an expectation"
    genesys_source = samples["conversation.acd.start.json"]["source"]
    no_body = {
        **samples["conversation.acd.start.json"],
        "detail": {
            "topicName": "v2.detail.events.conversation.c0c0c0c0-dead.acd.start",
            "eventBody": "not an object",
            "metadata": {},
        },
    }
    no_interaction = {
        "source": genesys_source,
        "detail-type": "v2.users.{id}.presence",
        "time": "2026-11-29T09:00:00Z",
        "detail": {
            "topicName": "v2.routing.queues.q-1.members",
            "eventBody": {"presenceDefinition": {"systemPresence": "AVAILABLE"}},
            "metadata": {"CorrelationId": "c0770c07-dead"},
        },
    }
    first_wave = [samples[name] for name in EXPECTED]

    put_on_bus(stack, stack["event_bus_name"], [*first_wave, no_body, no_interaction])

    by_key = {dedup_key(samples[name]): name for name in EXPECTED}
    assert len(by_key) == len(EXPECTED), "two samples share a key"
    sqs = aws(stack, "sqs")
    for consumer, where in stack["consumers"].items():
        bodies = drain(sqs, where["queue_url"], len(first_wave), 60)
        delivered = {dedup_key(body["event"]): body for body in bodies}
        assert set(delivered) == set(by_key), consumer
        assert len(bodies) == len(first_wave), f"{consumer} got an event twice"
        for key, body in delivered.items():
            name = by_key[key]
            interaction_id, state, stage, occurred_at = EXPECTED[name]
            assert set(body) == DELIVERED_FIELDS, name
            assert body["interaction_id"] == interaction_id, name
            assert (body["state"], body["stage"]) == (state, stage), name
            assert body["occurred_at"] == occurred_at, name
            assert body["detail_type"] == samples[name]["detail-type"], name
            assert body["source"] == samples[name]["source"], name
            assert body["sequence"] is None and body["replay"] is False, name
            assert RFC3339_MILLIS.fullmatch(body["received_at"]), name
            assert isinstance(body["late"], bool), name
            # The event travels whole: the detail exactly as Genesys sent it.
            assert body["event"]["detail"] == samples[name]["detail"], name
            assert body["event"]["id"] == body["event_id"], name

    quarantined = drain(sqs, stack["quarantine"]["queue_url"], 2, 30)
    reasons = {json.loads(q["raw"])["detail"]["topicName"]: q for q in quarantined}
    bad_body = reasons[no_body["detail"]["topicName"]]
    assert bad_body["reason"] == "invalid"
    # CorrelationId is not part of the key: its absence is no error.
    assert set(bad_body["errors"]) == {"detail.eventBody"}
    unlocated = reasons[no_interaction["detail"]["topicName"]]
    assert unlocated["reason"] == "invalid"
    assert "no interaction id" in unlocated["errors"]["detail.topicName"][0]

    # Genesys re-sends a notification: the same body under a new EventBridge id and time.
    resent = {**samples[CHAT_END], "id": uuid_of("5e5e5e5e", 1), "time": "2026-11-29T09:05:00Z"}
    put_on_bus(stack, stack["event_bus_name"], [resent])
    wait_until_ingest_is_idle(stack, 30)
    # Acknowledged, so already published if it was going to be (fan-out precedes the ack).
    for consumer, where in stack["consumers"].items():
        assert drain(sqs, where["queue_url"], 1, 1) == [], f"{consumer} got the re-send"
    assert drain(sqs, stack["quarantine"]["queue_url"], 1, 1) == []
    assert dead_letters(stack) == 0


def test_a_signed_post_is_delivered_end_to_end_and_an_unsigned_one_is_refused(
    local_stack: dict[str, Any],
) -> None:
    stack = local_stack
    push = stack["push"]
    assert push["url"] == stack["api_url"] + "/events"
    secret = aws(stack, "secretsmanager").get_secret_value(SecretId=push["secret_name"])[
        "SecretString"
    ]
    event = cxone_event("int-e2e-push", "Queued", 0, provider_event_id="cx-e2e-push-1")
    body = json.dumps({"events": [event]}).encode("utf-8")

    unsigned = requests.post(
        push["url"], data=body, headers={"Content-Type": "application/json"}, timeout=10
    )
    signed = signed_headers(secret, body)
    response = requests.post(push["url"], data=body, headers=signed, timeout=10)

    assert unsigned.status_code == 401
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["accepted"]
    sqs = aws(stack, "sqs")
    for consumer, where in stack["consumers"].items():
        bodies = [
            b
            for b in drain(sqs, where["queue_url"], 1, 45)
            if b["interaction_id"] == "int-e2e-push"
        ]
        assert len(bodies) == 1, consumer
        assert set(bodies[0]) == DELIVERED_FIELDS
        assert bodies[0]["stage"] == "Queued"
        assert bodies[0]["event"]["detail"]["eventId"] == "cx-e2e-push-1"


def test_simulate_via_https_drives_traffic_through_post_events(
    local_stack: dict[str, Any], tmp_path: Path
) -> None:
    stack_file = tmp_path / "stack.json"
    stack_file.write_text(json.dumps(local_stack))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RELAY_"))}

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.simulate",
            "--via",
            "https",
            "--stack",
            str(stack_file),
            "--count",
            "20",
            "--rate",
            "40",
            "--seed",
            "3",
            "--invalid-ratio",
            "0.1",
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 0, run.stdout + run.stderr
    assert f"POST {local_stack['push']['url']}" in run.stdout
    sqs = aws(local_stack, "sqs")
    analytics = local_stack["consumers"]["analytics-sink"]["queue_url"]
    delivered = drain(sqs, analytics, 1, 45)
    assert delivered and all(b["source"] == local_stack["event_source"] for b in delivered)

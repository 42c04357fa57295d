"""Oversized requests and events are refused with errors that say what the limit is.

Elsewhere already: a signed 300 KB POST /events body is 413 and puts nothing on the bus
(tests/integration/test_push.py::test_body_over_256_kb_gets_413_and_puts_nothing); limit=1001 on
GET /replay is 400 (tests/integration/test_replay_api.py, test_bad_window_parameters_are_400...);
11 events in one POST /events is 400 (test_push.py::test_malformed_batches_get_400...); an event
whose delivered message would exceed SNS's 256 KB is quarantined as too_large, at the exact
boundary (tests/integration/test_pipeline.py::test_an_event_too_large_for_sns_is_quarantined_...).
Here: the exact boundaries of POST /events, the order of its checks (authentication before
size), and the limits of the timeline, of cursors and of a replay job request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest

from chalicelib.api.params import BODY_MAX_BYTES, CURSOR_MAX_CHARS, LIMIT_MAX
from chalicelib.push.handler import MAX_BODY_BYTES
from chalicelib.push.signing import signed_headers
from tests.support.api_stage import ApiStage, api_stage
from tests.support.reliability import interactions


@pytest.fixture(scope="module")
def stage(aws_endpoint: str) -> Iterator[ApiStage]:
    with api_stage() as api:
        yield api


def body_of_size(size: int) -> bytes:
    """A valid one-event batch, padded with JSON whitespace to exactly `size` bytes."""
    body = json.dumps({"events": interactions(1, 1)[1]}).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def message(response: object) -> str:
    return json.loads(response.body)["Message"]  # type: ignore[attr-defined]


def test_post_events_takes_a_body_of_exactly_256_kb(stage: ApiStage) -> None:
    body = body_of_size(MAX_BODY_BYTES)

    response = stage.client.http.post(
        "/events", headers=signed_headers(stage.push_secret, body), body=body
    )

    assert response.status_code == 200, response.body[:300]
    assert json.loads(response.body)["accepted"] == 1


def test_post_events_refuses_one_byte_more_with_413_naming_the_limit(stage: ApiStage) -> None:
    body = body_of_size(MAX_BODY_BYTES + 1)

    response = stage.client.http.post(
        "/events", headers=signed_headers(stage.push_secret, body), body=body
    )

    assert response.status_code == 413
    assert json.loads(response.body)["Code"] == "RequestEntityTooLargeError"
    assert message(response) == (
        f"body is {MAX_BODY_BYTES + 1} bytes; at most {MAX_BODY_BYTES} (256 KB)"
    )


def test_an_unsigned_oversized_body_is_refused_as_unsigned_before_it_is_read(
    stage: ApiStage,
) -> None:
    """Authentication comes first: an anonymous caller learns nothing about the body rules."""
    body = body_of_size(300 * 1024)
    headers = {"Content-Type": "application/json", "X-Relay-Timestamp": str(int(time.time()))}

    response = stage.client.http.post("/events", headers=headers, body=body)

    assert response.status_code == 401
    assert "X-Relay-Signature" in message(response)


def test_timeline_limit_is_1_to_1000(stage: ApiStage) -> None:
    path = f"/interactions/{quote(stage.interactions[0])}/events"

    ok = stage.client.http.get(f"{path}?limit={LIMIT_MAX}")
    over = stage.client.http.get(f"{path}?limit={LIMIT_MAX + 1}")

    assert ok.status_code == 200 and len(json.loads(ok.body)["events"]) == 5
    assert over.status_code == 400
    assert message(over) == "limit: must be a whole number from 1 to 1000, got '1001'"


@pytest.mark.parametrize("route", ["timeline", "replay"])
def test_a_cursor_longer_than_2048_characters_is_400_naming_the_cursor(
    stage: ApiStage, route: str
) -> None:
    cursor = "A" * (CURSOR_MAX_CHARS + 1)
    if route == "timeline":
        url = f"/interactions/{quote(stage.interactions[0])}/events?cursor={cursor}"
    else:
        window = {"since": f"{stage.day}T00:00:00Z", "until": f"{stage.day}T12:00:00Z"}
        url = f"/replay?{urlencode(window)}&cursor={cursor}"

    response = stage.client.http.get(url)

    assert response.status_code == 400
    assert message(response).startswith("cursor: ")
    assert "2048" in message(response)


def test_a_job_request_over_64_kb_is_400_naming_the_body(stage: ApiStage) -> None:
    document = {
        "since": f"{stage.day}T00:00:00Z",
        "until": f"{stage.day}T12:00:00Z",
        "consumers": ["crm-updater"],
        "detail_type": "x" * BODY_MAX_BYTES,
    }

    response = stage.client.http.post(
        "/replay/jobs",
        headers={"Content-Type": "application/json"},
        body=json.dumps(document).encode(),
    )

    assert response.status_code == 400
    assert message(response) == f"body: is larger than {BODY_MAX_BYTES} bytes"

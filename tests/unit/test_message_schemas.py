"""docs/schemas/: the delivered and quarantine message schemas against the messages the relay
builds, from every provider fixture and every quarantine reason, and against broken copies.

(Every test that reads a consumer or quarantine queue also checks what it read: see
tests/support/message_schemas.py.)
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.config import load_settings
from chalicelib.ingest.quarantine import quarantine_message, undeliverable
from chalicelib.model import CanonicalEvent, InvalidEvent, SqsRecord, delivered_message
from chalicelib.providers.validation import parse_body, validate_event
from tests.support.message_schemas import (
    DELIVERED,
    QUARANTINE,
    schema_errors,
    schema_for,
    validator,
)

SETTINGS = load_settings({"AWS_REGION": "us-east-1"})
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE_FILES = sorted(FIXTURES.glob("*/*.json"))
RECEIVED_AT = "2026-11-29T09:00:02.000Z"


def canonical(path: Path) -> CanonicalEvent:
    event = validate_event(json.loads(path.read_text()), SETTINGS)
    assert isinstance(event, CanonicalEvent), event
    return event


def record(body: str) -> SqsRecord:
    return SqsRecord("msg-1", body, "handle", 1, "arn:aws:sqs:us-east-1:123456789012:ingest")


def quarantined(body: str) -> dict[str, Any]:
    parsed = parse_body(body)
    invalid = parsed if isinstance(parsed, InvalidEvent) else validate_event(parsed, SETTINGS)
    if isinstance(invalid, CanonicalEvent):
        invalid = undeliverable(invalid, RECEIVED_AT)
    assert invalid is not None
    return json.loads(quarantine_message(record(body), invalid, RECEIVED_AT))


def test_both_schemas_are_valid_draft_2020_12() -> None:
    for name in (DELIVERED, QUARANTINE):
        assert (
            validator(name).META_SCHEMA["$id"].startswith("https://json-schema.org/draft/2020-12")
        )


def test_there_are_fixtures_of_every_provider() -> None:
    assert {path.parent.name for path in FIXTURE_FILES} == {"connect", "cxone", "genesys"}


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize(("late", "replay_job_id"), [(False, None), (True, "job-1")])
def test_every_fixture_delivers_a_valid_message(
    path: Path, late: bool, replay_job_id: str | None
) -> None:
    message = delivered_message(
        canonical(path), received_at=RECEIVED_AT, late=late, replay_job_id=replay_job_id
    )
    assert schema_for(message) == DELIVERED
    assert schema_errors(DELIVERED, message) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json at all", "unparseable"),
        ("[1, 2]", "invalid"),  # JSON, but not an event
        (
            json.dumps(
                {
                    **json.loads((FIXTURES / "cxone/stage-changed.json").read_text()),
                    "detail": {"interaction.id": "int-1", "stage": "Escalated"},
                }
            ),
            "invalid",
        ),
        (
            json.dumps(
                {
                    **json.loads((FIXTURES / "cxone/stage-changed.json").read_text()),
                    "detail": {
                        "interaction.id": "int-1",
                        "stage": "Connected",
                        "notes": "x" * 300_000,  # unknown keys pass on: too big for SNS
                    },
                }
            ),
            "too_large",
        ),
    ],
)
def test_every_quarantine_reason_makes_a_valid_message(body: str, reason: str) -> None:
    message = quarantined(body)
    assert message["reason"] == reason
    assert schema_for(message) == QUARANTINE
    assert schema_errors(QUARANTINE, message) == []
    if reason == "too_large":
        assert len(message["raw"]) < message["raw_bytes"]  # cut to 64 KB, sized in full


def valid_delivered() -> dict[str, Any]:
    return delivered_message(
        canonical(FIXTURES / "cxone/stage-changed.json"), received_at=RECEIVED_AT, late=False
    )


def valid_quarantine() -> dict[str, Any]:
    return quarantined("not json at all")


def changed(message: dict[str, Any], **fields: Any) -> dict[str, Any]:
    broken = copy.deepcopy(message)
    for name, value in fields.items():
        if value is KeyError:
            del broken[name]
        else:
            broken[name] = value
    return broken


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"event_id": KeyError}, "(message)"),
        ({"extra": 1}, "(message)"),
        ({"occurred_at": "2026-11-29T09:00:01Z"}, "occurred_at"),
        ({"received_at": "2026-11-29T10:00:01.000+01:00"}, "received_at"),
        ({"sequence": -1}, "sequence"),
        ({"sequence": "3"}, "sequence"),
        ({"late": "false"}, "late"),
        ({"replay": True}, "replay_job_id"),
        ({"replay_job_id": "job-1"}, "replay_job_id"),
        ({"interaction_id": ""}, "interaction_id"),
        ({"event": {"id": "x"}}, "event"),
    ],
)
def test_the_delivered_schema_refuses_what_breaks_the_contract(
    fields: dict[str, Any], where: str
) -> None:
    errors = schema_errors(DELIVERED, changed(valid_delivered(), **fields))
    assert any(error.startswith(where + ":") for error in errors), errors


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"reason": "broken"}, "reason"),
        ({"errors": {}}, "errors"),
        ({"errors": {"detail.stage": "not a list"}}, "errors/detail.stage"),
        ({"raw_sha256": "AB" * 32}, "raw_sha256"),
        ({"raw": "x" * 65537}, "raw"),
        ({"message_id": KeyError}, "(message)"),
        ({"source": "extra"}, "(message)"),
    ],
)
def test_the_quarantine_schema_refuses_what_breaks_the_contract(
    fields: dict[str, Any], where: str
) -> None:
    errors = schema_errors(QUARANTINE, changed(valid_quarantine(), **fields))
    assert any(error.startswith(where + ":") for error in errors), errors


def test_bodies_that_are_not_the_relays_are_not_checked() -> None:
    envelope = json.loads((FIXTURES / "cxone/stage-changed.json").read_text())
    assert schema_for(envelope) is None
    assert schema_for(["a list"]) is None

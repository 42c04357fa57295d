"""docs/providers.md shows, for each provider, the message its consumers receive: produced by
running one of the fixtures through the relay's own validation and delivered-message code.

Each example in the document is preceded by `<!-- delivered: FIXTURE -->`; this test renders
that fixture again and fails when the document and the code part ways.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from chalicelib.config import load_settings
from chalicelib.formats import parse_rfc3339, rfc3339
from chalicelib.model import CanonicalEvent, delivered_message
from chalicelib.providers.validation import validate_record

PROJECT = Path(__file__).resolve().parents[2]
FIXTURES = PROJECT / "tests" / "fixtures"
DOC = PROJECT / "docs" / "providers.md"
EXAMPLE = re.compile(r"<!-- delivered: (?P<fixture>\S+) -->\n```json\n(?P<body>.*?)\n```", re.S)
# One example per provider, at least.
REQUIRED = {
    "cxone/stage-changed.json",
    "genesys/conversation.acd.start.json",
    "connect/voice.transfer.connected-to-agent.json",
}


def delivered_example(fixture: str) -> str:
    """The delivered message of a fixture, as JSON; received 800 ms after the envelope time."""
    settings = load_settings({"AWS_REGION": "us-east-1"})
    event = validate_record((FIXTURES / fixture).read_text(), settings)
    assert isinstance(event, CanonicalEvent), event
    received = parse_rfc3339(event.event["time"]) + timedelta(milliseconds=800)
    message = delivered_message(event, received_at=rfc3339(received), late=False)
    return json.dumps(message, indent=2, ensure_ascii=False)


def test_every_delivered_message_example_is_what_the_code_delivers_for_its_fixture() -> None:
    examples = {m["fixture"]: m["body"] for m in EXAMPLE.finditer(DOC.read_text())}

    assert set(examples) >= REQUIRED
    for fixture, shown in examples.items():
        assert shown == delivered_example(fixture), fixture

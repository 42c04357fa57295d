"""The delivered and quarantine message schemas (docs/schemas/), checked on every message the
suite reads.

The shared readers call `check_relay_message` on each body they hand a test: moto queues
(`helpers.drain_queue`, `local_stack.drain`) and the in-memory SNS (`fakes.Delivery.json`).
Those readers also see other bodies (EventBridge events on the ingest queue and its DLQ, a
test's own junk): a body is the relay's output when it is a JSON object naming an `event_id`
(a delivered message) or a `raw_sha256` (a quarantine message); no EventBridge envelope has
either key. Such a body must then match its schema in full.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
DELIVERED = "delivered-message.schema.json"
QUARANTINE = "quarantine-message.schema.json"


@cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_errors(name: str, message: Any) -> list[str]:
    """Every way `message` breaks the schema, as `path: message` lines (empty when valid)."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(message)'}: {error.message}"
        for error in validator(name).iter_errors(message)
    ]


def schema_for(message: Any) -> str | None:
    """Which schema a body read off a queue or topic must match; None when it is no output of
    the relay's."""
    if not isinstance(message, dict):
        return None
    if "raw_sha256" in message:
        return QUARANTINE
    if "event_id" in message:
        return DELIVERED
    return None


def check_relay_message(message: Any) -> Any:
    """`message`, unchanged, after asserting it matches its schema (if it is the relay's)."""
    name = schema_for(message)
    if name is not None:
        errors = schema_errors(name, message)
        assert not errors, f"message breaks {name}: {errors}\n{json.dumps(message)[:2000]}"
    return message


def check_relay_body(body: str) -> None:
    """`check_relay_message` on an SQS body, when it is JSON at all."""
    try:
        message = json.loads(body)
    except ValueError:
        return
    check_relay_message(message)

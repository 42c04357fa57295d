"""Parse and validate one inbound event; never raises, whatever the input.

Two outcomes only: a CanonicalEvent, or an InvalidEvent whose reason is
- "unparseable": not text a JSON parser should accept (invalid UTF-8, lone surrogates, not JSON,
  NaN/Infinity, numbers out of range, nesting deeper than MAX_NESTING_DEPTH), or
- "invalid": JSON, but not an event this relay accepts (not an object, unknown source, fails its
  profile's schema, or keys longer than DynamoDB takes: `key_limit_errors`).
Errors are keyed by field path ("detail.stage", "time", "_body" for the body as a whole).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from chalicelib.config import Settings
from chalicelib.errors import RelayError
from chalicelib.formats import shown
from chalicelib.model import CanonicalEvent, InvalidEvent
from chalicelib.providers import registry as profiles
from chalicelib.providers.common import described, json_type_name
from chalicelib.store.layout import event_key
from chalicelib.telemetry import logger

# Real events nest 3-6 levels; 64 leaves room and keeps every later recursive step
# (json.dumps, marshmallow, DynamoDB's 32-level map limit aside) far from Python's stack limit.
MAX_NESTING_DEPTH = 64
BODY_FIELD = "_body"
# DynamoDB's key limits, in UTF-8 bytes of the key as written (the store's prefixes included).
PARTITION_KEY_MAX_BYTES = 2048
SORT_KEY_MAX_BYTES = 1024

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class _NotJsonConstant(RelayError):
    """NaN, Infinity and -Infinity: Python's json accepts them, JSON does not. Raised inside
    json.loads and caught by parse_body, which makes it an "unparseable" InvalidEvent."""


def _refuse_constant(name: str) -> Any:
    raise _NotJsonConstant(f"{name} is not valid JSON (JSON has no NaN or Infinity)")


def _unparseable(message: str) -> InvalidEvent:
    return InvalidEvent(reason="unparseable", errors={BODY_FIELD: [message]})


def decode_body(body: object) -> str | InvalidEvent:
    """The body as text that can be re-encoded as UTF-8, or why it is not (any value: a
    caller's bug must not make this raise)."""
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            return bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            return _unparseable(f"not valid UTF-8: {error.reason} at byte {error.start}")
    if not isinstance(body, str):
        return _unparseable(f"expected text, got {type(body).__name__}")
    surrogate = _LONE_SURROGATE.search(body)
    if surrogate is not None:
        return _unparseable(
            f"not valid UTF-8 text: lone surrogate {surrogate.group()!a} at position "
            f"{surrogate.start()}"
        )
    return body


def json_value_problem(value: object) -> str | None:
    """Why an already-parsed value is not plain, finite, sanely nested JSON, or None if it is.

    Iterative, so 5,000 levels of nesting cost a loop, not a RecursionError. Escaped lone
    surrogates ("\\ud800") survive json.loads and would make every later UTF-8 encode fail.
    """
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_NESTING_DEPTH:
                return f"nested deeper than {MAX_NESTING_DEPTH} levels"
            if isinstance(item, dict):
                for key, nested in item.items():
                    if not isinstance(key, str):
                        return f"object key {shown(key)} is not a string"
                    if _LONE_SURROGATE.search(key):
                        return f"object key {key[:40]!a} holds a lone surrogate, not valid Unicode"
                    stack.append((nested, depth + 1))
            else:
                stack.extend((nested, depth + 1) for nested in item)
        elif isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return f"string {item[:40]!a} holds a lone surrogate, not valid Unicode"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"number {item!r} is not valid JSON (out of range, NaN or Infinity)"
        elif item is not None and not isinstance(item, bool | int):
            return f"{json_type_name(item)} is not a JSON value"
    return None


def parse_body(body: str | bytes) -> object | InvalidEvent:
    """The JSON value of an SQS record body, or an "unparseable" InvalidEvent."""
    text = decode_body(body)
    if isinstance(text, InvalidEvent):
        return text
    try:
        parsed: object = json.loads(text, parse_constant=_refuse_constant)
    except _NotJsonConstant as error:
        return _unparseable(str(error))
    except json.JSONDecodeError as error:
        return _unparseable(
            f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        )
    except RecursionError:
        return _unparseable(f"nested deeper than {MAX_NESTING_DEPTH} levels")
    except ValueError as error:
        # e.g. an integer with more digits than Python converts (4,300 by default).
        return _unparseable(f"not valid JSON: {error}")
    problem = json_value_problem(parsed)
    if problem is not None:
        return _unparseable(problem)
    return parsed


def _validate_json_value(event: object, settings: Settings) -> CanonicalEvent | InvalidEvent:
    if not isinstance(event, dict):
        return InvalidEvent(
            reason="invalid",
            errors={
                BODY_FIELD: [f"expected a JSON object (an event), got {json_type_name(event)}"]
            },
        )
    source = event.get("source")
    if not isinstance(source, str):
        if "source" in event:
            found = f"expected a string, got {described(source)}"
        else:
            found = "is required but missing"
        return InvalidEvent(reason="invalid", errors={"source": [found]})
    profile = profiles.profile_for(source, settings)
    if profile is None:
        accepted = " or ".join(profiles.accepted_sources(settings)) or "none configured"
        return InvalidEvent(
            reason="invalid",
            errors={"source": [f"{shown(source)} is not an accepted source; accepted: {accepted}"]},
        )
    mapped = profile.to_canonical(event, settings)
    if isinstance(mapped, InvalidEvent):
        return mapped
    interaction_field, dedup_field = profile.key_fields(event)
    errors = key_limit_errors(mapped, interaction_field, dedup_field)
    return InvalidEvent(reason="invalid", errors=errors) if errors else mapped


def key_limit_errors(
    event: CanonicalEvent, interaction_field: str, dedup_field: str
) -> dict[str, list[str]]:
    """Keys DynamoDB would refuse, under the fields they come from; empty when they fit.

    Measured on the events table's key (layout.event_key), the longest one the relay writes:
    the ledger's partition key is the same interaction id, unprefixed. A refused key would fail
    every retry, so it is invalid here instead (quarantined, never looping).
    """
    key = event_key(event.interaction_id, event.dedup_key)
    errors: dict[str, list[str]] = {}
    for field_path, kind, value, limit in (
        (interaction_field, "partition key", key["pk"]["S"], PARTITION_KEY_MAX_BYTES),
        (dedup_field, "sort key", key["sk"]["S"], SORT_KEY_MAX_BYTES),
    ):
        size = len(value.encode("utf-8"))
        if size > limit:
            errors.setdefault(field_path, []).append(
                f"makes a DynamoDB {kind} of {size:,} bytes (UTF-8, as stored); "
                f"the limit is {limit:,} bytes"
            )
    return errors


def _validator_failure(error: BaseException) -> InvalidEvent:
    # A bug here must not turn one event into an endless retry loop: quarantine it with a
    # message that says so, and log the traceback for whoever fixes the validator.
    logger.exception("event validation failed unexpectedly")
    return InvalidEvent(
        reason="invalid",
        errors={BODY_FIELD: [f"the validator failed on this event ({type(error).__name__})"]},
    )


def validate_record(body: str | bytes, settings: Settings) -> CanonicalEvent | InvalidEvent:
    """Validate an SQS record body: the EventBridge event JSON, as text or bytes."""
    try:
        parsed = parse_body(body)
        if isinstance(parsed, InvalidEvent):
            return parsed
        return _validate_json_value(parsed, settings)
    except Exception as error:
        return _validator_failure(error)


def validate_event(event: object, settings: Settings) -> CanonicalEvent | InvalidEvent:
    """Validate an already-parsed event (POST /events); it may be any JSON value."""
    try:
        problem = json_value_problem(event)
        if problem is not None:
            return _unparseable(problem)
        return _validate_json_value(event, settings)
    except Exception as error:
        return _validator_failure(error)

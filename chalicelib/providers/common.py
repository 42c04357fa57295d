"""Building blocks shared by every provider profile: strict JSON fields, time parsing, errors.

marshmallow's stock fields are lenient in ways that matter here: `Integer(strict=True)` accepts
`true` (bool is an Integral), `AwareDateTime` accepts ISO 8601 forms that are not RFC 3339, and
their messages do not show the offending value. The fields below are strict and say what they
got, so schema drift (a new stage, a number sent as a string) is readable in the quarantine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import Schema, ValidationError, fields

from chalicelib.model import canonical_json

# Values longer than this are cut in error messages: enough to recognise, never a payload dump.
SHOWN_VALUE_MAX_CHARS = 60
# A timestamp longer than this is not a timestamp; refuse it before running the regex.
TIMESTAMP_MAX_CHARS = 64

# RFC 3339 section 5.6 date-time: full date, "T", full time, fractional seconds allowed, and a
# mandatory offset ("Z" or +hh:mm). [0-9] rather than \d: \d also matches non-ASCII digits.
_RFC3339 = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?:(?P<zulu>[Zz])|(?P<sign>[+-])(?P<offset_hours>[0-9]{2}):(?P<offset_minutes>[0-9]{2}))"
)
WHOLE_NUMBER_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Year 10000 in epoch milliseconds: the first instant `datetime` cannot hold.
_EPOCH_MILLIS_LIMIT = 253_402_300_800_000


def shown(value: Any) -> str:
    """A short, JSON-flavoured rendering of an offending value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if len(value) > SHOWN_VALUE_MAX_CHARS:
            return repr(value[:SHOWN_VALUE_MAX_CHARS]) + f"… ({len(value)} chars)"
        return repr(value)
    if isinstance(value, int) and value.bit_length() > 200:
        # repr() of an int past 4,300 digits raises ValueError; a rough size is enough here.
        return f"an integer of about {int(value.bit_length() * math.log10(2))} digits"
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= SHOWN_VALUE_MAX_CHARS else text[:SHOWN_VALUE_MAX_CHARS] + "…"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def described(value: Any) -> str:
    """What a value is, and for a scalar its value: "a string '3'", "a boolean true", "an array"."""
    kind = json_type_name(value)
    if value is None or isinstance(value, Mapping | list | tuple):
        return kind
    if isinstance(value, str | bool | int | float):
        return f"{kind} {shown(value)}"
    return kind


def parse_rfc3339(text: str) -> datetime:
    """An aware datetime from an RFC 3339 date-time; ValueError with a readable reason if not."""
    hint = "expected RFC 3339 with an offset or Z, e.g. '2026-11-29T09:00:00.000Z'"
    if len(text) > TIMESTAMP_MAX_CHARS:
        raise ValueError(f"{shown(text)} is not a timestamp; {hint}")
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"{shown(text)} is not an RFC 3339 timestamp; {hint}")
    part = match.groupdict()
    second = int(part["second"])
    fraction = (part["fraction"] or "").ljust(6, "0")[:6]
    microsecond = int(fraction)
    if second == 60:
        # RFC 3339 allows a leap second; datetime cannot hold one, so keep it at the end of
        # the minute, which preserves its order among its neighbours.
        second, microsecond = 59, 999_999
    if part["zulu"]:
        offset = timedelta(0)
    else:
        offset_hours, offset_minutes = int(part["offset_hours"]), int(part["offset_minutes"])
        if offset_hours > 23 or offset_minutes > 59:
            raise ValueError(f"{shown(text)} has an impossible UTC offset; {hint}")
        offset = timedelta(hours=offset_hours, minutes=offset_minutes)
        if part["sign"] == "-":
            offset = -offset
    try:
        local = datetime(
            int(part["year"]),
            int(part["month"]),
            int(part["day"]),
            int(part["hour"]),
            int(part["minute"]),
            second,
            microsecond,
        )
        # Converting to UTC can leave datetime's range (year 1 with a positive offset).
        return (local - offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise ValueError(f"{shown(text)} is not a real date and time; {hint}") from None


def datetime_from_epoch_millis(millis: int) -> datetime:
    """An aware UTC datetime from Unix epoch milliseconds; ValueError if out of range."""
    if not 0 <= millis < _EPOCH_MILLIS_LIMIT:
        raise ValueError(f"{millis} is out of range for epoch milliseconds")
    return _EPOCH + timedelta(milliseconds=millis)


class ReadableMessages:
    """Mixin: the generic messages of every field, phrased to follow a field path."""

    default_error_messages = {
        "required": "is required but missing",
        "null": "must not be null",
    }


class Text(ReadableMessages, fields.Field):
    """A JSON string, with optional length bounds and an optional set of allowed values."""

    def __init__(
        self,
        *,
        min_length: int = 0,
        max_length: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.min_length = min_length
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise ValidationError(f"expected a string, got {described(value)}")
        too_short = len(value) < self.min_length
        too_long = self.max_length is not None and len(value) > self.max_length
        if too_short or too_long:
            if self.max_length is None:
                bounds = f"at least {self.min_length}"
            elif self.min_length == 0:
                bounds = f"at most {self.max_length}"
            else:
                bounds = f"{self.min_length}-{self.max_length}"
            raise ValidationError(
                f"must be {bounds} characters long, got {len(value)}: {shown(value)}"
            )
        return value


class WholeNumber(ReadableMessages, fields.Field):
    """A JSON integer >= 0: not a string of digits, not 3.5, not 3.0, not a boolean.

    Capped at the largest signed 64-bit integer: every store and language downstream can hold
    it exactly (DynamoDB numbers keep 38 digits, JavaScript consumers parse to doubles anyway).
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"expected a JSON integer >= 0, got {described(value)}")
        if value < 0:
            raise ValidationError(f"expected a JSON integer >= 0, got {value}")
        if value > WHOLE_NUMBER_MAX:
            raise ValidationError(
                f"must be at most {WHOLE_NUMBER_MAX} (a 64-bit integer), got {shown(value)}"
            )
        return value


class Timestamp(ReadableMessages, fields.Field):
    """An RFC 3339 string (offset or Z required), loaded as an aware UTC datetime."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str):
            raise ValidationError(f"expected an RFC 3339 timestamp string, got {described(value)}")
        try:
            return parse_rfc3339(value)
        except ValueError as error:
            raise ValidationError(str(error)) from None


class JsonObject(ReadableMessages, fields.Field):
    """A JSON object, kept exactly as received (its contents are the provider's business)."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValidationError(f"expected a JSON object, got {described(value)}")
        return value


class Anything(ReadableMessages, fields.Raw):
    """Any JSON value: a field the contract lists but does not constrain."""


class StrictObject(ReadableMessages, fields.Nested):
    """A nested object validated by its own schema; errors nest under its path."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, dict):
            raise ValidationError(f"expected a JSON object, got {described(value)}")
        return super()._deserialize(value, attr, data, **kwargs)


class ProfileSchema(Schema):
    """Base of every profile schema: a readable message when a nested value is not an object."""

    error_messages = {"type": "expected a JSON object"}


def serialized_size(value: Any) -> int:
    """Bytes of `value` as compact JSON, the way it travels on."""
    return len(canonical_json(value).encode("utf-8"))


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error messages as {"dotted.field.path": [message, …]}.

    A schema-level error ("_schema") belongs to the path of the object it is about; at the top
    it is about the whole body, "_body".
    """
    flat: dict[str, list[str]] = {}

    def add(path: str, found: Any) -> None:
        if isinstance(found, Mapping):
            for key, nested in found.items():
                if key == "_schema":
                    add(path, nested)
                else:
                    add(f"{path}.{key}" if path else str(key), nested)
        elif isinstance(found, list | tuple):
            for item in found:
                add(path, item)
        else:
            flat.setdefault(path or "_body", []).append(str(found))

    add(prefix, messages)
    return flat


def merge_errors(*error_maps: Mapping[str, list[str]]) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for error_map in error_maps:
        for path, found in error_map.items():
            merged.setdefault(path, []).extend(found)
    return merged

"""The one home of the project's text formats: RFC 3339 time (written and parsed), canonical
JSON, SHA-256 digests, and the short rendering of an offending value in an error message.

Every time this project writes is UTC, RFC 3339, with milliseconds and `Z`, zero-padded
(`0999-01-01T00:00:00.000Z`), so string order is time order.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

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


Choice = TypeVar("Choice", bound=str)


def one_of(text: str, choices: tuple[Choice, ...]) -> Choice | None:
    """`text` as the one of `choices` it equals (typed as that choice, e.g. a Literal), or
    None: how a stored or configured string becomes a status or a mode."""
    for choice in choices:
        if text == choice:
            return choice
    return None


def utc_now() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """UTC, RFC 3339, milliseconds and `Z`: string order is time order."""
    moment = moment.astimezone(UTC)
    # Not strftime("%Y"): it writes years below 1000 without their leading zeros.
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}."
        f"{moment.microsecond // 1000:03d}Z"
    )


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8", errors="surrogatepass")
    return hashlib.sha256(data).hexdigest()


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

"""Parameters of the REST API, validated with marshmallow; errors name the parameter.

Query strings arrive as {name: [values]} (a name given twice is an error, not "last one
wins"); the job request arrives as a raw JSON body. Each parser returns a frozen dataclass or
raises `ParameterError`, whose message lists every problem as "<parameter>: <what is wrong>".

Times: RFC 3339 with an offset or Z, checked with a strict pattern (marshmallow's
AwareDateTime alone accepts ISO 8601 forms that are not RFC 3339, e.g. a space for the "T").
They are normalised to the store's form (UTC, milliseconds, Z) rounding *up* to the next
millisecond, which keeps since <= occurred_at < until exact for the millisecond times stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from marshmallow import Schema, ValidationError, fields, post_load, validates_schema

from chalicelib.config import Settings
from chalicelib.errors import BadRequest
from chalicelib.formats import parse_rfc3339, rfc3339, shown
from chalicelib.providers.common import Text, flatten_errors

LIMIT_MIN = 1
LIMIT_MAX = 1000
LIMIT_DEFAULT = 100
ID_MAX_CHARS = 128
DETAIL_TYPE_MAX_CHARS = 256
CURSOR_MAX_CHARS = 2048
# The years a window may name (in UTC): four digits, written with leading zeros, and a year
# of margin at the top so that rounding and the window arithmetic never leave the calendar.
YEAR_MIN = 1000
YEAR_MAX = 9998
# A POST body larger than this is not a job request.
BODY_MAX_BYTES = 64 * 1024
_DIGITS = re.compile(r"[0-9]+")


class ParameterError(BadRequest):
    """Bad request parameters (a 400); `errors` maps each parameter to what is wrong with it."""


# ---- fields ---------------------------------------------------------------------------------


class PageLimit(fields.Field):  # type: ignore[type-arg]
    """An integer from 1 to 1000, from a query string ("25") or JSON (25); not "1e3", not 2.5."""

    default_error_messages = {"required": "is required but missing", "null": "must not be null"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        expected = f"must be a whole number from {LIMIT_MIN} to {LIMIT_MAX}, got {shown(value)}"
        if isinstance(value, str) and _DIGITS.fullmatch(value) and len(value) <= 12:
            number = int(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            raise ValidationError(expected)
        if not LIMIT_MIN <= number <= LIMIT_MAX:
            raise ValidationError(expected)
        return number


class Rfc3339(fields.Field):  # type: ignore[type-arg]
    """An RFC 3339 date-time string, loaded as an aware UTC datetime."""

    default_error_messages = {"required": "is required but missing", "null": "must not be null"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str):
            raise ValidationError(f"must be an RFC 3339 timestamp string, got {shown(value)}")
        outside = ValidationError(
            f"{shown(value)} is outside the years {YEAR_MIN}-{YEAR_MAX} (UTC) that a window "
            "may name"
        )
        try:
            moment = parse_rfc3339(value).astimezone(UTC)
        except OverflowError:  # an offset that moves the time out of the calendar
            raise outside from None
        except ValueError as error:
            raise ValidationError(str(error)) from None
        if not YEAR_MIN <= moment.year <= YEAR_MAX:
            raise outside
        return moment


class UnicodeText(Text):
    """Text that is valid Unicode: a lone surrogate (JSON allows "\\ud800") cannot be stored,
    sent to AWS or compared with what was stored, so it is refused here, naming the field."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            position = error.start
            raise ValidationError(
                f"must be valid Unicode text: character {position} is a lone surrogate "
                f"(U+{ord(text[position]):04X})"
            ) from None
        return text


def _text(max_length: int, **kwargs: Any) -> Text:
    return UnicodeText(min_length=1, max_length=max_length, **kwargs)


# ---- schemas --------------------------------------------------------------------------------


class _ParamsSchema(Schema):
    error_messages = {
        "unknown": "is not a parameter of this request",
        "type": "must be a JSON object",
    }


class _WindowFields(_ParamsSchema):
    """since/until and the optional filters, shared by GET /replay and POST /replay/jobs."""

    since = Rfc3339(required=True)
    until = Rfc3339(required=True)
    detail_type = _text(DETAIL_TYPE_MAX_CHARS)
    interaction_id = _text(ID_MAX_CHARS)

    def __init__(self, *, retention_days: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retention_days = retention_days

    @validates_schema
    def _check_window(self, data: dict[str, Any], **kwargs: Any) -> None:
        since, until = data["since"], data["until"]
        if until <= since:
            raise ValidationError("must be later than since", field_name="until")
        if until - since > timedelta(days=self.retention_days):
            raise ValidationError(
                f"the window from since to until is longer than the store's retention "
                f"({self.retention_days} days); ask for a shorter window",
                field_name="until",
            )


class TimelineSchema(_ParamsSchema):
    interaction_id = _text(ID_MAX_CHARS, required=True)
    limit = PageLimit(load_default=LIMIT_DEFAULT)
    cursor = _text(CURSOR_MAX_CHARS)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> TimelineQuery:
        return TimelineQuery(**data)


class WindowSchema(_WindowFields):
    limit = PageLimit(load_default=LIMIT_DEFAULT)
    cursor = _text(CURSOR_MAX_CHARS)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> WindowQuery:
        return WindowQuery(
            since=normalised(data["since"]),
            until=normalised(data["until"]),
            detail_type=data.get("detail_type"),
            interaction_id=data.get("interaction_id"),
            limit=data["limit"],
            cursor=data.get("cursor"),
        )


class ConsumerList(fields.Field):  # type: ignore[type-arg]
    """A non-empty JSON array of configured consumer names; duplicates are collapsed."""

    default_error_messages = {"required": "is required but missing", "null": "must not be null"}

    def __init__(self, *, known: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.known = known

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise ValidationError(
                f"must be a non-empty array of consumer names, got {shown(value)}; "
                f"configured consumers: {', '.join(self.known)}"
            )
        not_strings = [item for item in value if not isinstance(item, str)]
        if not_strings:
            raise ValidationError(
                f"must hold consumer names (strings), got {shown(not_strings[0])}"
            )
        unknown = [name for name in value if name not in self.known]
        if unknown:
            named = ", ".join(shown(name) for name in dict.fromkeys(unknown))
            raise ValidationError(
                f"unknown consumer {named}; configured consumers: {', '.join(self.known)}"
            )
        return tuple(dict.fromkeys(value))


class JobRequestSchema(_WindowFields):
    consumers = ConsumerList(known=(), required=True)

    def __init__(self, *, retention_days: int, consumers: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(retention_days=retention_days, **kwargs)
        # Each schema instance has its own copies of the fields: the allowed consumers are
        # the stage's settings, known only now.
        cast(ConsumerList, self.fields["consumers"]).known = consumers

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> JobRequest:
        return JobRequest(
            since=normalised(data["since"]),
            until=normalised(data["until"]),
            detail_type=data.get("detail_type"),
            interaction_id=data.get("interaction_id"),
            consumers=data["consumers"],
        )


# ---- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineQuery:
    interaction_id: str
    limit: int = LIMIT_DEFAULT
    cursor: str | None = None

    def cursor_filters(self) -> dict[str, Any]:
        return {"interaction_id": self.interaction_id}


@dataclass(frozen=True)
class WindowQuery:
    since: str  # normalised: UTC, milliseconds, Z
    until: str
    detail_type: str | None
    interaction_id: str | None
    limit: int
    cursor: str | None

    def cursor_filters(self) -> dict[str, Any]:
        """What a cursor is bound to: everything but the page size and the cursor itself."""
        return {
            "since": self.since,
            "until": self.until,
            "detail_type": self.detail_type,
            "interaction_id": self.interaction_id,
        }


@dataclass(frozen=True)
class JobRequest:
    since: str
    until: str
    detail_type: str | None
    interaction_id: str | None
    consumers: tuple[str, ...]


# ---- parsing --------------------------------------------------------------------------------


def normalised(moment: datetime) -> str:
    """UTC, milliseconds, Z; a sub-millisecond remainder rounds up (see module docstring)."""
    remainder = moment.microsecond % 1000
    if remainder:
        moment = moment + timedelta(microseconds=1000 - remainder)
    return rfc3339(moment.astimezone(UTC))


def single_values(query: Mapping[str, list[str]] | None) -> dict[str, str]:
    """One value per parameter; a parameter given more than once is an error."""
    values: dict[str, str] = {}
    repeated: dict[str, list[str]] = {}
    for name, given in (query or {}).items():
        if len(given) != 1:
            repeated[name] = [f"is given {len(given)} times; give it once"]
        else:
            values[name] = given[0]
    if repeated:
        raise ParameterError(repeated)
    return values


def _load(schema: Schema, data: Mapping[str, Any]) -> Any:
    try:
        return schema.load(data)
    except ValidationError as error:
        raise ParameterError(flatten_errors(error.messages)) from None


def _without_empty_cursor(values: dict[str, str]) -> dict[str, str]:
    # `cursor=` (empty) is what a client sends for "first page" when it templates the URL.
    if values.get("cursor") == "":
        values = {k: v for k, v in values.items() if k != "cursor"}
    return values


def parse_timeline(interaction_id: str, query: Mapping[str, list[str]] | None) -> TimelineQuery:
    values = _without_empty_cursor(single_values(query))
    if "interaction_id" in values:
        raise ParameterError({"interaction_id": ["belongs in the path, not the query string"]})
    return cast(
        TimelineQuery, _load(TimelineSchema(), {**values, "interaction_id": interaction_id})
    )


def parse_window(query: Mapping[str, list[str]] | None, settings: Settings) -> WindowQuery:
    values = _without_empty_cursor(single_values(query))
    return cast(
        WindowQuery, _load(WindowSchema(retention_days=settings.store_retention_days), values)
    )


def _not_json(constant: str) -> Any:
    # Python's json reads NaN and Infinity; JSON (RFC 8259) has neither.
    raise ValueError(f"{constant} is not JSON")


def parse_job_request(body: bytes | str | None, settings: Settings) -> JobRequest:
    """The body of POST /replay/jobs: a JSON object."""
    raw = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    if not raw.strip():
        raise ParameterError(
            {"body": ["is empty; send a JSON object with since, until and consumers"]}
        )
    if len(raw) > BODY_MAX_BYTES:
        raise ParameterError({"body": [f"is larger than {BODY_MAX_BYTES} bytes"]})
    try:
        document = json.loads(raw, parse_constant=_not_json)
    except (UnicodeDecodeError, ValueError) as error:
        where = (
            f" (line {error.lineno}, column {error.colno})"
            if isinstance(error, json.JSONDecodeError)
            else ""
        )
        raise ParameterError({"body": [f"is not valid JSON{where}"]}) from None
    except RecursionError:
        # A job request is a flat object; a body nested thousands deep is not one.
        raise ParameterError(
            {"body": ["nests too deeply; send a flat JSON object with since, until and consumers"]}
        ) from None
    if not isinstance(document, dict):
        raise ParameterError({"body": ["must be a JSON object with since, until and consumers"]})
    schema = JobRequestSchema(
        retention_days=settings.store_retention_days, consumers=settings.consumers
    )
    return cast(JobRequest, _load(schema, document))

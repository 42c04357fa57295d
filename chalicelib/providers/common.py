"""Building blocks shared by every provider profile: strict JSON fields, time parsing, errors.

marshmallow's stock fields are lenient in ways that matter here: `Integer(strict=True)` accepts
`true` (bool is an Integral), `AwareDateTime` accepts ISO 8601 forms that are not RFC 3339, and
their messages do not show the offending value. The fields below are strict and say what they
got, so schema drift (a new stage, a number sent as a string) is readable in the quarantine.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields
from marshmallow.types import ErrorMessages, StrSequenceOrSet

from chalicelib.formats import canonical_json, parse_rfc3339, shown

WHOLE_NUMBER_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Year 10000 in epoch milliseconds: the first instant `datetime` cannot hold.
_EPOCH_MILLIS_LIMIT = 253_402_300_800_000


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


def datetime_from_epoch_millis(millis: int) -> datetime:
    """An aware UTC datetime from Unix epoch milliseconds; ValueError if out of range."""
    if not 0 <= millis < _EPOCH_MILLIS_LIMIT:
        raise ValueError(f"{millis} is out of range for epoch milliseconds")
    return _EPOCH + timedelta(milliseconds=millis)


class ReadableMessages:
    """Mixin: the generic messages of every field, phrased to follow a field path."""

    default_error_messages: ErrorMessages = {
        "required": "is required but missing",
        "null": "must not be null",
    }


class Text(ReadableMessages, fields.Field[str]):
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


class WholeNumber(ReadableMessages, fields.Field[int]):
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


class Timestamp(ReadableMessages, fields.Field[datetime]):
    """An RFC 3339 string (offset or Z required), loaded as an aware UTC datetime."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str):
            raise ValidationError(f"expected an RFC 3339 timestamp string, got {described(value)}")
        try:
            return parse_rfc3339(value)
        except ValueError as error:
            raise ValidationError(str(error)) from None


class JsonObject(ReadableMessages, fields.Field[dict[str, Any]]):
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

    def _deserialize(
        self,
        value: Any,
        attr: str | None,
        data: Any,
        partial: bool | StrSequenceOrSet | None = None,
        **kwargs: Any,
    ) -> Any:
        if not isinstance(value, dict):
            raise ValidationError(f"expected a JSON object, got {described(value)}")
        return super()._deserialize(value, attr, data, partial, **kwargs)


class ProfileSchema(Schema):
    """Base of every profile schema: a readable message when a nested value is not an object."""

    error_messages = {"type": "expected a JSON object"}


# EventBridge allows detail-types of up to 256 characters.
DETAIL_TYPE_MAX_CHARS = 256


class EventBridgeEnvelopeSchema(ProfileSchema):
    """The EventBridge envelope every profile reads; region, resources, account and version
    are tolerated, unchecked."""

    class Meta:
        unknown = EXCLUDE

    id = Text(required=True, min_length=1, max_length=128)
    source = Text(required=True, min_length=1)
    detail_type = Text(
        required=True, data_key="detail-type", min_length=1, max_length=DETAIL_TYPE_MAX_CHARS
    )
    time = Timestamp(required=True)
    detail = JsonObject(required=True)


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


def load_envelope_and_detail(
    event: dict[str, Any], envelope_schema: Schema, detail_schema: Schema | None
) -> tuple[dict[str, Any], dict[str, Any]] | dict[str, list[str]]:
    """The loaded envelope and detail, or every error of both at once (paths under `detail.`).

    `detail_schema` None: the envelope's own errors already say why no detail schema applies
    (an unknown detail-type); a detail that is not an object is the envelope schema's error."""
    errors: dict[str, list[str]] = {}
    envelope: dict[str, Any] = {}
    detail: dict[str, Any] = {}
    try:
        envelope = envelope_schema.load(event)
    except ValidationError as error:
        errors = flatten_errors(error.messages)
    raw_detail = event.get("detail")
    if detail_schema is not None and isinstance(raw_detail, dict):
        try:
            detail = detail_schema.load(raw_detail)
        except ValidationError as error:
            errors = merge_errors(errors, flatten_errors(error.messages, "detail"))
    return errors if errors else (envelope, detail)

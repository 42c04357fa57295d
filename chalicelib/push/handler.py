"""`POST /events`: signed HTTPS push for providers without EventBridge.

    headers + secret -> signature (401) -> replay ledger (401) -> size (413) -> batch (400)
    -> validate each event (same profiles as ingest) -> PutEvents on the stage's bus -> 200

The route has no gateway authorizer (push sources cannot sign SigV4), so this module is the
whole authentication: the signature headers, checked by chalicelib.push.signing (pure)
against the shared secret from Secrets Manager. A signature is accepted once: it is
remembered in the ledger table with a conditional put, which holds across Lambda instances.
Nothing is put on the bus before all of that has passed. Accepted events go on the bus with
PutEvents, so they take the same path (rule -> ingest queue -> pipeline) as every other
event; EventBridge gives each a new envelope id, so the provider's own `detail.eventId` is
what makes a retried request harmless.

Neither the secret nor a signature is ever logged, raised or returned.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chalicelib.aws import AwsFailure, error_code
from chalicelib.errors import BadRequest, DependencyUnavailable
from chalicelib.formats import parse_rfc3339, sha256_hex
from chalicelib.model import InvalidEvent
from chalicelib.providers.validation import parse_body, validate_event
from chalicelib.push.signing import (
    SIGNATURE_HEADER,
    SIGNATURE_WINDOW_SECONDS,
    TIMESTAMP_HEADER,
    Refused,
    SignatureHeaders,
    SigningKeys,
    read_signature_headers,
    signed_with_any,
)
from chalicelib.runtime import Runtime
from chalicelib.telemetry import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_secretsmanager.type_defs import GetSecretValueResponseTypeDef

MAX_BODY_BYTES = 256 * 1024
MAX_EVENTS_PER_REQUEST = 10
# A signature is remembered a little past its window, so clock skew between Lambda instances
# cannot reopen it; after that the timestamp check alone refuses it.
REPLAY_MARGIN_SECONDS = 60
REPLAY_KEY_PREFIX = "SIG#"
# Short enough that a rotated secret is picked up within a minute; a mismatching signature
# re-reads the secret sooner (at most once per SECRET_RECHECK_SECONDS, so a flood of bad
# signatures cannot turn into a flood of Secrets Manager calls).
SECRET_CACHE_SECONDS = 60
SECRET_RECHECK_SECONDS = 5
# PutEvents entry errors worth one more try; the others (InvalidArgument, MalformedDetail,
# NotAuthorizedForSourceException, …) would fail again.
RETRYABLE_PUT_ERRORS = frozenset({"InternalFailure", "ThrottlingException"})
RESOURCE_ARN_MAX_CHARS = 2048
DETAIL_TYPE_MAX_CHARS = 128  # PutEvents' limit
PROVISION_HINT = "python -m scripts.provision credentials"


# --------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class PushResponse:
    status_code: int
    body: dict[str, Any]


def error_response(status_code: int, code: str, message: str) -> PushResponse:
    """The same error shape as Chalice's own errors: {"Code", "Message"}."""
    return PushResponse(status_code, {"Code": code, "Message": message})


def refused(message: str) -> PushResponse:
    return error_response(401, "UnauthorizedError", message)


# --------------------------------------------------------------------------- replay ledger keys


def replay_key(signature: str) -> str:
    """Ledger key of a used signature: its hash, so the table holds no usable signature."""
    return REPLAY_KEY_PREFIX + sha256_hex(signature)


def replay_expires_at(signed: SignatureHeaders) -> int:
    return signed.timestamp + SIGNATURE_WINDOW_SECONDS + REPLAY_MARGIN_SECONDS


# --------------------------------------------------------------------------- adapters


class SecretUnavailable(DependencyUnavailable):
    """The signing secret cannot be read; the message is safe to return (503)."""


def _read_version(
    secrets_client: SecretsManagerClient, name: str, stage: str
) -> GetSecretValueResponseTypeDef | None:
    try:
        return secrets_client.get_secret_value(SecretId=name, VersionStage=stage)
    except ClientError as error:
        code = error_code(error)
        if code == "ResourceNotFoundException":
            return None
        if code == "InvalidRequestException":
            raise SecretUnavailable(
                f"the signing secret {name} cannot be read (scheduled for deletion?); restore "
                f"it or run `{PROVISION_HINT}` once it is gone"
            ) from None
        logger.warning("push signing secret unreadable", extra={"error_code": code})
        raise SecretUnavailable("the signing secret cannot be read right now; retry") from None
    except AwsFailure as error:
        logger.warning("push signing secret unreadable", extra={"error": error_code(error)})
        raise SecretUnavailable("the signing secret cannot be read right now; retry") from None


def _created_at(response: GetSecretValueResponseTypeDef) -> float:
    created = response.get("CreatedDate")
    return created.timestamp() if isinstance(created, datetime) else 0.0


def read_signing_keys(secrets_client: SecretsManagerClient, name: str) -> SigningKeys:
    """The shared secret's current and previous versions, or SecretUnavailable saying what
    to do. A version's SecretString is the raw key."""
    current = _read_version(secrets_client, name, "AWSCURRENT")
    if current is None:
        raise SecretUnavailable(
            f"POST /events is not set up: the signing secret {name} does not exist; "
            f"run `{PROVISION_HINT}` for this stage"
        )
    value = current.get("SecretString")
    if not value:
        raise SecretUnavailable(
            f"the signing secret {name} holds no value; run `{PROVISION_HINT}` for this stage"
        )
    previous = _read_version(secrets_client, name, "AWSPREVIOUS")
    previous_value = previous.get("SecretString") if previous else None
    return SigningKeys(
        current=value,
        current_created_at=_created_at(current),
        previous=previous_value or None,  # an empty previous version accepts nothing
    )


@dataclass
class _CachedKeys:
    keys: SigningKeys
    read_at: float


@dataclass
class SigningSecretCache:
    """The keys per name, kept in memory for a short while (one read per minute, not per call)."""

    ttl_seconds: float = SECRET_CACHE_SECONDS
    recheck_seconds: float = SECRET_RECHECK_SECONDS
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, _CachedKeys] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, secrets_client: SecretsManagerClient, name: str) -> SigningKeys:
        with self._lock:
            cached = self._entries.get(name)
        if cached is not None and self.clock() - cached.read_at < self.ttl_seconds:
            return cached.keys
        return self._read(secrets_client, name)

    def reread_if_due(self, secrets_client: SecretsManagerClient, name: str) -> SigningKeys | None:
        """Fresh keys after a mismatch (the secret may have been rotated); None if too soon."""
        with self._lock:
            cached = self._entries.get(name)
        if cached is not None and self.clock() - cached.read_at < self.recheck_seconds:
            return None
        return self._read(secrets_client, name)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _read(self, secrets_client: SecretsManagerClient, name: str) -> SigningKeys:
        keys = read_signing_keys(secrets_client, name)  # absence is not cached
        with self._lock:
            self._entries[name] = _CachedKeys(keys, self.clock())
        return keys


SIGNING_SECRETS = SigningSecretCache()


def remember_signature(dynamodb: DynamoDBClient, table: str, signed: SignatureHeaders) -> bool:
    """True the first time a signature is seen, False after; a conditional put decides.

    Raises DependencyUnavailable when the table cannot answer.
    """
    try:
        dynamodb.put_item(
            TableName=table,
            Item={
                "pk": {"S": replay_key(signed.signature)},
                "expires_at": {"N": str(replay_expires_at(signed))},
            },
            ConditionExpression="attribute_not_exists(pk)",
        )
    except AwsFailure as error:
        if error_code(error) == "ConditionalCheckFailedException":
            return False
        logger.warning("push: replay check failed", extra={"error_code": error_code(error)})
        raise DependencyUnavailable("the request could not be checked for replay; retry") from None
    return True


# --------------------------------------------------------------------------- the batch


class BadBatch(BadRequest):
    """The body is not {"events": [1..10 events]}; the message says what is wrong (400)."""


def parse_batch(body: bytes) -> list[Any]:
    parsed = parse_body(body)
    if isinstance(parsed, InvalidEvent):
        messages = [message for found in parsed.errors.values() for message in found]
        raise BadBatch({"body": ["; ".join(messages)]})
    if not isinstance(parsed, dict):
        raise BadBatch({"body": ['expected a JSON object {"events": [...]}']})
    events = parsed.get("events")
    if not isinstance(events, list):
        found = "is missing" if "events" not in parsed else "is not an array"
        raise BadBatch({"events": [f'{found}; expected {{"events": [1 to 10 events]}}']})
    if not 1 <= len(events) <= MAX_EVENTS_PER_REQUEST:
        raise BadBatch(
            {
                "events": [
                    f"expected 1 to {MAX_EVENTS_PER_REQUEST} events per request, got "
                    f"{len(events)}; split larger batches"
                ]
            }
        )
    return events


def bus_entry_problems(event: dict[str, Any]) -> dict[str, list[str]]:
    """What PutEvents would refuse in a valid event: a bad `resources` list would fail the whole
    call (client-side validation), an over-long detail-type the entry."""
    problems: dict[str, list[str]] = {}
    detail_type = event.get("detail-type")
    if isinstance(detail_type, str) and len(detail_type) > DETAIL_TYPE_MAX_CHARS:
        problems["detail-type"] = [
            f"PutEvents takes at most {DETAIL_TYPE_MAX_CHARS} characters, got {len(detail_type)}"
        ]
    resources = event.get("resources")
    if resources is None:
        return problems
    if not isinstance(resources, list):
        problems["resources"] = ["expected an array of strings"]
        return problems
    for position, resource in enumerate(resources):
        if not isinstance(resource, str):
            problems.setdefault("resources", []).append(f"item {position}: expected a string")
        elif len(resource) > RESOURCE_ARN_MAX_CHARS:
            problems.setdefault("resources", []).append(
                f"item {position}: longer than {RESOURCE_ARN_MAX_CHARS} characters"
            )
    return problems


def bus_entry(event: dict[str, Any], bus_name: str) -> PutEventsRequestEntryTypeDef:
    """The PutEvents entry of a validated event; `detail` (and its eventId) travel unchanged."""
    return {
        "Source": event["source"],
        "DetailType": event["detail-type"],
        "Detail": json.dumps(event["detail"], separators=(",", ":"), ensure_ascii=False),
        "Resources": list(event.get("resources") or []),
        "EventBusName": bus_name,
        "Time": parse_rfc3339(event["time"]),  # validated already: it parses
    }


@dataclass(frozen=True)
class PutFailure:
    code: str
    message: str


def put_entries(
    events_client: EventBridgeClient, entries: Sequence[PutEventsRequestEntryTypeDef]
) -> list[str | PutFailure]:
    """PutEvents; per entry its new EventBridge id or why it failed. Retryable failures get
    one more try. A first call that fails as a whole raises DependencyUnavailable (nothing of
    it was put)."""
    outcomes: list[str | PutFailure] = [PutFailure("NotSent", "")] * len(entries)
    pending = list(range(len(entries)))
    for attempt in range(2):
        try:
            response = events_client.put_events(Entries=[entries[i] for i in pending])
        except AwsFailure as error:
            code = error_code(error)
            if attempt == 0:
                logger.warning("push: PutEvents failed", extra={"error_code": code})
                raise DependencyUnavailable(
                    f"the event bus did not take the events ({code}); nothing was put on it: "
                    "retry the request, signed again"
                ) from None
            for index in pending:
                outcomes[index] = PutFailure(code, "the retry failed")
            return outcomes
        retry: list[int] = []
        results = response.get("Entries", [])
        for position, index in enumerate(pending):
            result = results[position] if position < len(results) else {}
            if result.get("EventId") and not result.get("ErrorCode"):
                outcomes[index] = result["EventId"]
                continue
            failure = PutFailure(
                str(result.get("ErrorCode") or "Unconfirmed"),
                str(result.get("ErrorMessage") or "")[:200],
            )
            outcomes[index] = failure
            if failure.code in RETRYABLE_PUT_ERRORS:
                retry.append(index)
        if not retry:
            break
        pending = retry
    return outcomes


def accepted(index: int, event_id: str) -> dict[str, Any]:
    return {"index": index, "status": "accepted", "errors": {}, "event_id": event_id}


def rejected(index: int, reason: str, errors: dict[str, list[str]]) -> dict[str, Any]:
    return {"index": index, "status": "rejected", "reason": reason, "errors": errors}


def put_batch(runtime: Runtime, events: list[Any]) -> PushResponse:
    """Validate each event, put the valid ones on the bus, report per event."""
    settings = runtime.settings
    results: dict[int, dict[str, Any]] = {}
    entries: list[PutEventsRequestEntryTypeDef] = []
    entry_indices: list[int] = []
    for index, event in enumerate(events):
        validated = validate_event(event, settings)
        if isinstance(validated, InvalidEvent):
            results[index] = rejected(index, validated.reason, validated.errors)
            continue
        problems = bus_entry_problems(event)
        if problems:
            results[index] = rejected(index, "invalid", problems)
            continue
        entries.append(bus_entry(event, settings.names.event_bus))
        entry_indices.append(index)
    if entries:
        put = put_entries(runtime.events, entries)
        for index, outcome in zip(entry_indices, put, strict=True):
            if isinstance(outcome, str):
                results[index] = accepted(index, outcome)
            else:
                message = f"{outcome.code}: {outcome.message}" if outcome.message else outcome.code
                results[index] = rejected(index, "put_failed", {"_bus": [message]})
    ordered = [results[index] for index in range(len(events))]
    accepted_count = sum(1 for result in ordered if result["status"] == "accepted")
    logger.info(
        "push: batch handled",
        extra={"push": {"events": len(events), "accepted": accepted_count}},
    )
    return PushResponse(
        200,
        {
            "results": ordered,
            "accepted": accepted_count,
            "rejected": len(ordered) - accepted_count,
        },
    )


# --------------------------------------------------------------------------- the request


def _refuse(refusal: Refused) -> PushResponse:
    logger.warning("push: request refused", extra={"push": {"refused": refusal.reason}})
    return refused(refusal.message)


def handle_push(
    headers: Mapping[str, str],
    raw_body: bytes | str | None,
    runtime: Runtime,
    *,
    now: float | None = None,
    secrets: SigningSecretCache = SIGNING_SECRETS,
) -> PushResponse:
    """One POST /events request, from its headers and the exact bytes received.

    The one boundary of the push entry point: a BadRequest is a 400, a DependencyUnavailable
    (the secret, the replay check, the bus) a 503 saying what to do; nothing was put on the bus
    in either case.
    """
    if raw_body is None:
        body = b""
    elif isinstance(raw_body, str):
        body = raw_body.encode("utf-8")
    else:
        body = bytes(raw_body)
    try:
        return _push(headers, body, runtime, time.time() if now is None else now, secrets)
    except BadRequest as error:
        return error_response(400, "BadRequestError", str(error))
    except DependencyUnavailable as error:
        return error_response(503, "ServiceUnavailable", str(error))


def _push(
    headers: Mapping[str, str],
    body: bytes,
    runtime: Runtime,
    now: float,
    secrets: SigningSecretCache,
) -> PushResponse:
    settings = runtime.settings

    # 1. authentication, before anything else is looked at
    signed = read_signature_headers(headers, now)
    if isinstance(signed, Refused):
        return _refuse(signed)
    secret_name = settings.names.push_secret
    overlap = settings.push_secret_overlap_seconds
    try:
        keys = secrets.get(runtime.secretsmanager, secret_name)
        matches = signed_with_any(keys, signed, body, now, overlap)
        if not matches:
            fresh = secrets.reread_if_due(runtime.secretsmanager, secret_name)
            matches = fresh is not None and signed_with_any(fresh, signed, body, now, overlap)
    except SecretUnavailable:
        logger.error("push: signing secret unavailable", extra={"secret_name": secret_name})
        raise
    if not matches:
        return _refuse(
            Refused(
                "bad_signature",
                f"{SIGNATURE_HEADER} does not match: sign '<{TIMESTAMP_HEADER}>.<raw body>' "
                "with HMAC-SHA256 and the shared secret, over the exact bytes sent",
            )
        )
    if not remember_signature(runtime.dynamodb, settings.names.ledger_table, signed):
        return _refuse(
            Refused(
                "replayed",
                "this signature was already used: every request needs a fresh signature "
                f"(a new {TIMESTAMP_HEADER}); a retried event is recognised by detail.eventId",
            )
        )

    # 2. the body
    if len(body) > MAX_BODY_BYTES:
        return error_response(
            413,
            "RequestEntityTooLargeError",
            f"body is {len(body)} bytes; at most {MAX_BODY_BYTES} ({MAX_BODY_BYTES // 1024} KB)",
        )
    return put_batch(runtime, parse_batch(body))

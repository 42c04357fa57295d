"""Pure cost accounting: DynamoDB item sizes and capacity units, SNS billable publishes, prices.

moto reports a constant ConsumedCapacity, so capacity units are computed here from the items
themselves, following the rules AWS documents:

- item size: "DynamoDB item sizes and formats" (Amazon DynamoDB Developer Guide): attribute
  names plus values; numbers ~1 byte per two significant digits + 1; binary by raw bytes;
  null/boolean 1 byte; a list or map 3 bytes of overhead plus 1 byte per element.
- write request units: 1 per 1 KB (rounded up) of the larger of the old and new item, per item
  written; a failed conditional write still consumes units for the existing item (minimum 1);
  "Read/write capacity mode" and "Managing settings on DynamoDB provisioned capacity tables".
- read request units: 1 per 4 KB (rounded up) for a strongly consistent read, half of that for
  an eventually consistent one; GetItem/BatchGetItem round up per item, Query rounds up the
  sum of the items it returns.
- global secondary indexes: a table write that adds an item with the index keys writes one
  index entry; one that changes an index key writes two (delete + put); with a keys-only
  projection an update that leaves the index keys alone writes none ("Global secondary
  indexes: provisioned throughput considerations").
- SNS: "Each 64KB chunk of published data is billed as 1 request" (Amazon SNS pricing); a
  PublishBatch is billed by the 64 KB chunks of its total payload, so up to 10 small messages
  cost one request.
- EventBridge: custom and partner events put on a bus are billed per million, each 64 KB
  chunk of an entry counting as one event; AWS service events (Amazon Connect's, on the
  default bus) are free. An entry's size is the UTF-8 bytes of its Time (14), Source,
  DetailType, Detail and Resources ("Calculating Amazon EventBridge PutEvents event entry
  size"). Delivering to an SQS target costs nothing more at EventBridge, but each message it
  sends to the queue is an SQS request (per 64 KB chunk) that the queue's owner pays.
- CloudWatch Logs: ingestion is billed per GB of log data (the lines a function writes, EMF
  metrics included: EMF is log data until CloudWatch extracts it); Lambda itself writes a
  START, END and REPORT line per invocation.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

KB = 1024
WRITE_UNIT_BYTES = 1 * KB
READ_UNIT_BYTES = 4 * KB
SNS_BILLING_CHUNK_BYTES = 64 * KB
EVENTBRIDGE_CHUNK_BYTES = 64 * KB
SQS_CHUNK_BYTES = 64 * KB
GB = 1024**3
EVENTBRIDGE_TIME_BYTES = 14
# START (~90 bytes), END (~60) and REPORT (~190) lines per invocation, as Lambda writes them
# for a 512 MB function: the same for every implementation, per invocation.
LAMBDA_PLATFORM_LOG_BYTES_PER_INVOCATION = 340


# ---- prices ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prices:
    """On-demand list prices, us-east-1, in USD.

    In effect since 2024-11-01 (the date DynamoDB on-demand prices were halved); the SNS, SQS
    and Lambda prices below did not change then. Re-check the pages before relying on them.
    """

    as_of: str = "2024-11-01"
    region: str = "us-east-1"
    # Amazon DynamoDB pricing for on-demand capacity (aws.amazon.com/dynamodb/pricing/on-demand)
    dynamodb_per_million_write_units: float = 0.625
    dynamodb_per_million_read_units: float = 0.125
    # Amazon SNS pricing (aws.amazon.com/sns/pricing): standard topics, per million publish
    # requests (each 64 KB chunk of a request is one), after the first million each month.
    sns_per_million_publishes: float = 0.50
    # Amazon SQS pricing (aws.amazon.com/sqs/pricing): standard queues, per million requests
    # (each 64 KB chunk is one), after the first million each month.
    sqs_per_million_requests: float = 0.40
    # AWS Lambda pricing (aws.amazon.com/lambda/pricing): x86, first pricing tier.
    lambda_per_gb_second: float = 0.0000166667
    lambda_per_million_invocations: float = 0.20
    lambda_memory_gb: float = 0.5  # the ingest function's memory: 512 MB
    # Amazon CloudWatch pricing (aws.amazon.com/cloudwatch/pricing): Logs, Standard log class,
    # data ingestion per GB (storage, 0.03 per GB-month, depends on retention: left out).
    cloudwatch_logs_per_gb_ingested: float = 0.50
    # Amazon EventBridge pricing (aws.amazon.com/eventbridge/pricing): custom and partner
    # events published to a bus, per million (64 KB chunks); AWS service events are free.
    eventbridge_per_million_events: float = 1.00

    def sources(self) -> dict[str, str]:
        return {
            "dynamodb": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
            "sns": "https://aws.amazon.com/sns/pricing/",
            "sqs": "https://aws.amazon.com/sqs/pricing/",
            "lambda": "https://aws.amazon.com/lambda/pricing/",
            "cloudwatch_logs": "https://aws.amazon.com/cloudwatch/pricing/",
            "eventbridge": "https://aws.amazon.com/eventbridge/pricing/",
        }

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "sources": self.sources()}


PRICES = Prices()


# ---- DynamoDB item sizes and capacity units ------------------------------------------------


def number_size(text: str) -> int:
    """Bytes DynamoDB counts for a number: 1 per two significant digits, plus 1."""
    digits = re.sub(r"[^0-9]", "", text.split("e")[0].split("E")[0])
    significant = digits.strip("0") or "0"
    return math.ceil(len(significant) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one low-level attribute value (`{"S": "..."}`, `{"M": {...}}`, ...)."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode("utf-8"))
    if kind == "N":
        return number_size(raw)
    if kind == "B":
        return len(raw) if isinstance(raw, bytes | bytearray) else len(str(raw).encode())
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode("utf-8")) for s in raw)
    if kind == "NS":
        return sum(number_size(n) for n in raw)
    if kind == "BS":
        return sum(len(b) for b in raw)
    if kind == "M":
        return 3 + sum(len(name.encode("utf-8")) + value_size(v) + 1 for name, v in raw.items())
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in raw)
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes of a low-level item: attribute names plus values."""
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(new_size: int | None, old_size: int | None = None) -> int:
    """Write request units of one item write: 1 per KB of the larger of old and new, min 1."""
    larger = max(new_size or 0, old_size or 0)
    return max(1, math.ceil(larger / WRITE_UNIT_BYTES))


def read_units(size: int, consistent: bool) -> float:
    """Read request units of one read of `size` bytes (0 bytes read still costs the minimum)."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


def index_writes(
    new_keys: tuple[Any, ...] | None, old_keys: tuple[Any, ...] | None, projection_changed: bool
) -> int:
    """Index entries written for one table write, given the item's index key values before and
    after (None: the item has no entry in the index)."""
    if new_keys is None and old_keys is None:
        return 0
    if new_keys is None or old_keys is None:
        return 1  # an entry added or removed
    if new_keys != old_keys:
        return 2  # delete the old entry, put the new one
    return 1 if projection_changed else 0


_UPDATE = re.compile(r"^\s*SET\s+(.*?)(?:\s+ADD\s+(\S+)\s+(:\w+))?\s*$", re.IGNORECASE | re.DOTALL)
_ASSIGNMENT = re.compile(r"^(#?\w+)\s*=\s*(?:if_not_exists\(\s*(#?\w+)\s*,\s*(:\w+)\s*\)|(:\w+))$")


def apply_set_update(
    item: Mapping[str, Any] | None,
    key: Mapping[str, Any],
    update_expression: str,
    names: Mapping[str, str] | None,
    values: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The item after an UpdateItem whose expression is `SET a = :v, b = if_not_exists(b, :w)`
    with an optional `ADD n :one` on a number.

    Enough for the updates the measured implementations send (Powertools' save_success, our
    arrival marks); anything else raises, so an unmodelled update cannot be silently mis-billed.
    """
    match = _UPDATE.match(update_expression)
    if match is None:
        raise ValueError(f"cannot model update expression {update_expression!r}")
    names, values = names or {}, values or {}
    result = {**(item or {}), **key}
    for assignment in re.split(r",\s*(?![^()]*\))", match.group(1)):
        clause = _ASSIGNMENT.match(assignment.strip())
        if clause is None:
            raise ValueError(f"cannot model update clause {assignment!r}")
        target, kept, kept_value, value = clause.groups()
        name = names.get(target, target)
        if kept is not None:
            if names.get(kept, kept) != name:
                raise ValueError(f"cannot model update clause {assignment!r}")
            result.setdefault(name, values[kept_value])
        else:
            result[name] = values[value]
    if match.group(2) is not None:
        counter = names.get(match.group(2), match.group(2))
        current = int(result.get(counter, {"N": "0"})["N"])
        result[counter] = {"N": str(current + int(values[match.group(3)]["N"]))}
    return result


# ---- SNS ------------------------------------------------------------------------------------


def sns_payload_bytes(message: str, attributes: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Bytes SNS counts for one message: the body plus each attribute's name, type and value."""
    size = len(message.encode("utf-8"))
    for name, attribute in (attributes or {}).items():
        size += len(name.encode("utf-8")) + len(attribute.get("DataType", "").encode("utf-8"))
        value = attribute.get("StringValue", attribute.get("BinaryValue", b""))
        size += len(value) if isinstance(value, bytes | bytearray) else len(str(value).encode())
    return size


def sns_billable_requests(payload_sizes: Iterable[int]) -> int:
    """Billable publish requests of one Publish or PublishBatch call: one per 64 KB chunk of
    its total payload, at least one."""
    total = sum(payload_sizes)
    return max(1, math.ceil(total / SNS_BILLING_CHUNK_BYTES))


# ---- EventBridge and the ingest queue ---------------------------------------------------------


def eventbridge_entry_bytes(event: Mapping[str, Any]) -> int:
    """Bytes EventBridge bills for one PutEvents entry of an EventBridge-shaped event."""
    detail = json.dumps(event.get("detail", {}), separators=(",", ":"), ensure_ascii=False)
    size = EVENTBRIDGE_TIME_BYTES + len(detail.encode("utf-8"))
    size += len(str(event.get("source", "")).encode("utf-8"))
    size += len(str(event.get("detail-type", "")).encode("utf-8"))
    size += sum(len(str(r).encode("utf-8")) for r in event.get("resources", []) or [])
    return size


def billed_chunks(size: int, chunk: int) -> int:
    """Requests (or events) billed for a payload of `size` bytes: one per chunk, at least one."""
    return max(1, math.ceil(size / chunk))


def is_aws_service_event(event: Mapping[str, Any]) -> bool:
    """AWS's own events (source `aws.<service>`, e.g. aws.connect) cost nothing to publish;
    partner sources (`aws.partner/...`) and custom ones are billed."""
    source = str(event.get("source", ""))
    return source.startswith("aws.") and not source.startswith("aws.partner/")


def eventbridge_billable_events(event: Mapping[str, Any]) -> int:
    """EventBridge events billed for getting `event` onto its bus (0: an AWS service event)."""
    if is_aws_service_event(event):
        return 0
    return billed_chunks(eventbridge_entry_bytes(event), EVENTBRIDGE_CHUNK_BYTES)


# ---- cost per event -------------------------------------------------------------------------


@dataclass(frozen=True)
class UsagePerEvent:
    """Billable usage divided by the number of events fed (records, duplicates included)."""

    write_units: float
    read_units: float
    sns_publishes: float
    sqs_requests: float
    invocations: float
    lambda_seconds: float  # billed duration (wall time of the handler)
    log_bytes: float = 0.0  # CloudWatch Logs ingestion, platform lines included
    eventbridge_events: float = 0.0  # billable EventBridge events (64 KB chunks)


def usd_per_million_events(usage: UsagePerEvent, prices: Prices = PRICES) -> dict[str, float]:
    """Estimated USD per million events, by service and in total."""
    million = 1_000_000
    lambda_usd = (
        usage.invocations * prices.lambda_per_million_invocations
        + usage.lambda_seconds * million * prices.lambda_memory_gb * prices.lambda_per_gb_second
    )
    by_service = {
        "dynamodb": usage.write_units * prices.dynamodb_per_million_write_units
        + usage.read_units * prices.dynamodb_per_million_read_units,
        "sns": usage.sns_publishes * prices.sns_per_million_publishes,
        "sqs": usage.sqs_requests * prices.sqs_per_million_requests,
        "lambda": lambda_usd,
        "cloudwatch_logs": usage.log_bytes * million / GB * prices.cloudwatch_logs_per_gb_ingested,
        "eventbridge": usage.eventbridge_events * prices.eventbridge_per_million_events,
    }
    return {**by_service, "total": sum(by_service.values())}


def dynamodb_usd_per_million_by_table(
    write_units_by_table: Mapping[str, float],
    read_units_by_table: Mapping[str, float],
    prices: Prices = PRICES,
) -> dict[str, float]:
    """USD per million events spent on each table (and "table/index"), from per-event units."""
    tables = sorted(set(write_units_by_table) | set(read_units_by_table))
    return {
        table: write_units_by_table.get(table, 0.0) * prices.dynamodb_per_million_write_units
        + read_units_by_table.get(table, 0.0) * prices.dynamodb_per_million_read_units
        for table in tables
    }


def billed_lambda_seconds(wall_seconds: float) -> float:
    """Lambda bills duration in 1 ms increments, rounded up."""
    return math.ceil(wall_seconds * 1000) / 1000

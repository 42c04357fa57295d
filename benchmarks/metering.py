"""Count every AWS call an implementation makes, and bill it.

`CallRecorder.attach(session)` registers botocore event hooks on a boto3 session; every client
the session creates afterwards reports each API call (its parameters and parsed response).
The hooks only append to a list, so they add next to nothing to the measured time; the
billing (`bill`) runs afterwards, replaying the calls in order over a shadow of the tables
so that a write's old item size and index keys are known without reading DynamoDB.
"""

from __future__ import annotations

import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import boto3

from benchmarks.accounting import (
    apply_set_update,
    index_writes,
    item_size,
    read_units,
    sns_billable_requests,
    sns_payload_bytes,
    write_units,
)
from chalicelib.store.layout import plain_blob

_PARAMS_KEY = "benchmark_params"


@dataclass(frozen=True)
class ApiCall:
    service: str  # botocore service name: "dynamodb", "sns", "sqs", ...
    operation: str  # "PutItem", "PublishBatch", ...
    params: Mapping[str, Any]
    response: Mapping[str, Any]  # parsed response ({} if the call failed without one)
    error_code: str | None


class CallRecorder:
    """Collects the API calls of the sessions it is attached to."""

    def __init__(self) -> None:
        self.calls: list[ApiCall] = []
        self._lock = threading.Lock()
        self.enabled = True

    def attach(self, session: boto3.Session) -> None:
        events = session.events
        events.register("before-parameter-build", self._remember_params)
        events.register("after-call", self._record)
        events.register("after-call-error", self._record_failure)

    def reset(self) -> None:
        with self._lock:
            self.calls = []

    def _remember_params(self, params: Mapping[str, Any], context: dict, **_: Any) -> None:
        context[_PARAMS_KEY] = params

    def _record(self, parsed: Mapping[str, Any], model: Any, context: dict, **_: Any) -> None:
        if not self.enabled:
            return
        error = (parsed or {}).get("Error", {}).get("Code") if isinstance(parsed, dict) else None
        call = ApiCall(
            service=model.service_model.service_name,
            operation=model.name,
            params=context.get(_PARAMS_KEY, {}),
            response=parsed or {},
            error_code=error or None,
        )
        with self._lock:
            self.calls.append(call)

    def _record_failure(
        self, event_name: str, context: dict, exception: Exception, **_: Any
    ) -> None:
        # botocore passes no model here: "after-call-error.<service id>.<Operation>".
        if not self.enabled:
            return
        _, service, operation = event_name.split(".", 2)
        call = ApiCall(
            service=service,
            operation=operation,
            params=context.get(_PARAMS_KEY, {}),
            response={},
            error_code=type(exception).__name__,
        )
        with self._lock:
            self.calls.append(call)


# ---- billing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexShape:
    key_names: tuple[str, ...]
    projection: str  # KEYS_ONLY | INCLUDE | ALL
    included: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableShape:
    key_names: tuple[str, ...]
    indexes: dict[str, IndexShape] = field(default_factory=dict)


def describe_tables(dynamodb: Any, tables: Iterable[str]) -> dict[str, TableShape]:
    """Key schemas and indexes of `tables` (read outside any recorded session)."""
    shapes = {}
    for name in tables:
        table = dynamodb.describe_table(TableName=name)["Table"]
        indexes = {}
        for index in table.get("GlobalSecondaryIndexes", []):
            projection = index.get("Projection", {})
            indexes[index["IndexName"]] = IndexShape(
                key_names=tuple(k["AttributeName"] for k in index["KeySchema"]),
                projection=projection.get("ProjectionType", "ALL"),
                included=tuple(projection.get("NonKeyAttributes", [])),
            )
        shapes[name] = TableShape(
            key_names=tuple(k["AttributeName"] for k in table["KeySchema"]), indexes=indexes
        )
    return shapes


@dataclass
class Bill:
    """What a sequence of calls costs, in billable units."""

    requests: Counter[str] = field(default_factory=Counter)  # by service
    operations: Counter[str] = field(default_factory=Counter)  # "service:Operation"
    write_units: float = 0.0  # tables and indexes
    index_write_units: float = 0.0  # the part of write_units spent on index entries
    read_units: float = 0.0
    sns_billable: int = 0
    sns_messages: Counter[str] = field(default_factory=Counter)  # topic ARN -> messages
    # Where the write units went: by table, and by "table/index" for index entries; and the
    # items written per table with their total bytes (average item size = bytes / items).
    write_units_by_table: Counter[str] = field(default_factory=Counter)
    read_units_by_table: Counter[str] = field(default_factory=Counter)
    items_written: Counter[str] = field(default_factory=Counter)
    bytes_written: Counter[str] = field(default_factory=Counter)


class _Shadow:
    """The items the recorded calls wrote, by table and primary key."""

    def __init__(self, shapes: Mapping[str, TableShape]) -> None:
        self.shapes = shapes
        self.items: dict[tuple[str, tuple], dict[str, Any]] = {}

    def key_of(self, table: str, item: Mapping[str, Any]) -> tuple:
        return tuple(_scalar(item[name]) for name in self.shapes[table].key_names)

    def get(self, table: str, item_or_key: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.items.get((table, self.key_of(table, item_or_key)))

    def write(
        self, table: str, new: dict[str, Any] | None, old: dict[str, Any] | None
    ) -> tuple[int, int, dict[str, int]]:
        """Store (or delete, when `new` is None) an item; returns (table units, index units,
        index units by index name)."""
        key_source = new if new is not None else old
        assert key_source is not None
        new_size = item_size(new) if new is not None else None
        old_size = item_size(old) if old is not None else None
        table_units = write_units(new_size, old_size)
        index_units = 0
        by_index: dict[str, int] = {}
        shape = self.shapes.get(table, TableShape(()))
        for index_name, index in shape.indexes.items():
            entries = index_writes(
                _index_keys(index, new),
                _index_keys(index, old),
                _projection_changed(index, new, old),
            )
            if entries:
                entry = _index_entry(index, shape, new if new is not None else old)
                by_index[index_name] = entries * write_units(item_size(entry))
                index_units += by_index[index_name]
        full_key = (table, self.key_of(table, key_source))
        if new is None:
            self.items.pop(full_key, None)
        else:
            self.items[full_key] = new
        return table_units, index_units, by_index


def _scalar(value: Mapping[str, Any]) -> Any:
    ((kind, raw),) = value.items()
    return (kind, bytes(raw) if isinstance(raw, bytearray) else raw)


def _index_keys(index: IndexShape, item: Mapping[str, Any] | None) -> tuple | None:
    if item is None or any(name not in item for name in index.key_names):
        return None
    return tuple(_scalar(item[name]) for name in index.key_names)


def _projection_changed(
    index: IndexShape, new: Mapping[str, Any] | None, old: Mapping[str, Any] | None
) -> bool:
    if index.projection == "KEYS_ONLY" or new is None or old is None:
        return False
    if index.projection == "ALL":
        return new != old
    return any(new.get(name) != old.get(name) for name in index.included)


def _index_entry(index: IndexShape, shape: TableShape, item: Mapping[str, Any]) -> dict:
    names = set(index.key_names) | set(shape.key_names)
    if index.projection == "ALL":
        return dict(item)
    if index.projection == "INCLUDE":
        names |= set(index.included)
    return {name: item[name] for name in names if name in item}


def _consistent(request: Mapping[str, Any]) -> bool:
    return bool(request.get("ConsistentRead", False))


def bill(calls: Iterable[ApiCall], shapes: Mapping[str, TableShape]) -> Bill:
    """Bill recorded calls in order. `shapes` must cover every table they wrote or read."""
    result = Bill()
    shadow = _Shadow(shapes)
    for call in calls:
        result.requests[call.service] += 1
        result.operations[f"{call.service}:{call.operation}"] += 1
        if call.service == "dynamodb":
            _bill_dynamodb(call, shadow, result)
        elif call.service == "sns":
            _bill_sns(call, result)
    return result


def _add_write(
    result: Bill, table: str, item: Mapping[str, Any] | None, units: tuple[int, int, dict]
) -> None:
    table_units, index_units, by_index = units
    result.write_units += table_units + index_units
    result.index_write_units += index_units
    result.write_units_by_table[table] += table_units
    for index_name, index_units_of_one in by_index.items():
        result.write_units_by_table[f"{table}/{index_name}"] += index_units_of_one
    if item is not None:
        result.items_written[table] += 1
        result.bytes_written[table] += item_size(item)


def _add_read(result: Bill, table: str, units: float) -> None:
    result.read_units += units
    result.read_units_by_table[table] += units


def _add_failed_write(result: Bill, table: str, units: int) -> None:
    result.write_units += units
    result.write_units_by_table[table] += units


def _bill_dynamodb(call: ApiCall, shadow: _Shadow, result: Bill) -> None:
    params, response = call.params, call.response
    operation = call.operation
    conditional_failed = call.error_code == "ConditionalCheckFailedException"
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        table = params["TableName"]
        key_source = params.get("Item") or params["Key"]
        old = shadow.get(table, key_source)
        if call.error_code is not None:
            if conditional_failed:  # a failed condition still consumes the write
                _add_failed_write(result, table, write_units(item_size(old) if old else None))
            return
        if operation == "PutItem":
            new: dict[str, Any] | None = dict(params["Item"])
        elif operation == "UpdateItem":
            new = apply_set_update(
                old,
                params["Key"],
                params["UpdateExpression"],
                params.get("ExpressionAttributeNames"),
                params.get("ExpressionAttributeValues"),
            )
        else:
            new = None
            if old is None:
                _add_failed_write(result, table, 1)  # deleting nothing still costs a unit
                return
        _add_write(result, table, new, shadow.write(table, new, old))
    elif operation == "BatchWriteItem":
        if call.error_code is not None:
            return
        unprocessed = response.get("UnprocessedItems") or {}
        for table, requests in params["RequestItems"].items():
            skipped = unprocessed.get(table, [])
            for request in requests:
                if request in skipped:
                    continue
                if "PutRequest" in request:
                    item = dict(request["PutRequest"]["Item"])
                    units = shadow.write(table, item, shadow.get(table, item))
                    _add_write(result, table, item, units)
                else:
                    key = request["DeleteRequest"]["Key"]
                    old = shadow.get(table, key)
                    if old is None:
                        _add_failed_write(result, table, 1)
                    else:
                        _add_write(result, table, None, shadow.write(table, None, old))
    elif operation == "GetItem":
        full = shadow.get(params["TableName"], params["Key"]) or response.get("Item")
        units = read_units(item_size(full) if full else 0, _consistent(params))
        _add_read(result, params["TableName"], units)
    elif operation == "BatchGetItem":
        # Each key is read as a GetItem would be, found or not ("If you request a nonexistent
        # item, it consumes the minimum read capacity units").
        unprocessed = response.get("UnprocessedKeys") or {}
        for table, request in params["RequestItems"].items():
            skipped = unprocessed.get(table, {}).get("Keys", [])
            for key in request["Keys"]:
                if key in skipped:
                    continue
                full = shadow.get(table, key)
                if full is None:
                    full = next(
                        (
                            i
                            for i in response.get("Responses", {}).get(table, [])
                            if all(i.get(n) == v for n, v in key.items())
                        ),
                        None,
                    )
                size = item_size(full) if full else 0
                _add_read(result, table, read_units(size, _consistent(request)))
    elif operation in ("Query", "Scan"):
        table = params["TableName"]
        items = response.get("Items", [])
        if params.get("IndexName") is not None or table not in shadow.shapes:
            size = sum(item_size(i) for i in items)
        else:
            size = sum(item_size(shadow.get(table, i) or i) for i in items)
        _add_read(result, table, read_units(size, _consistent(params)))


def _bill_sns(call: ApiCall, result: Bill) -> None:
    params = call.params
    if call.operation == "Publish":
        size = sns_payload_bytes(params.get("Message", ""), params.get("MessageAttributes"))
        result.sns_billable += sns_billable_requests([size])
        if call.error_code is None:
            result.sns_messages[params.get("TopicArn", "")] += 1
    elif call.operation == "PublishBatch":
        entries = params.get("PublishBatchRequestEntries", [])
        sizes = [sns_payload_bytes(e["Message"], e.get("MessageAttributes")) for e in entries]
        result.sns_billable += sns_billable_requests(sizes)
        if call.error_code is None:
            published = len(call.response.get("Successful", []))
            result.sns_messages[params.get("TopicArn", "")] += published


# ---- the uncompressed counterfactual ----------------------------------------------------------


def inflated_blob(blob: bytes) -> bytes:
    """A binary attribute as it would be stored uncompressed (the store's blobs are zlib
    streams of JSON, or plain JSON in items written before compression; anything else, as is)."""
    try:
        return plain_blob(bytes(blob))
    except zlib.error:
        return bytes(blob)


def _inflated_item(item: Mapping[str, Any], inflate: Callable[[bytes], bytes]) -> dict[str, Any]:
    return {
        name: {"B": inflate(value["B"])} if "B" in value else value for name, value in item.items()
    }


def uncompressed_calls(
    calls: Iterable[ApiCall], inflate: Callable[[bytes], bytes] = inflated_blob
) -> list[ApiCall]:
    """The same calls with every binary attribute written stored inflated: billing them tells
    what the writes would have cost without compression (the items' layout otherwise kept)."""
    result = []
    for call in calls:
        params, response = call.params, call.response
        if call.service == "dynamodb" and call.operation == "PutItem":
            params = {**params, "Item": _inflated_item(params["Item"], inflate)}
        elif call.service == "dynamodb" and call.operation == "BatchWriteItem":
            params = {**params, "RequestItems": _inflated_writes(params["RequestItems"], inflate)}
            if response.get("UnprocessedItems"):  # still recognised as the skipped requests
                unprocessed = _inflated_writes(response["UnprocessedItems"], inflate)
                response = {**response, "UnprocessedItems": unprocessed}
        result.append(replace(call, params=params, response=response))
    return result


def _inflated_writes(
    requests_by_table: Mapping[str, list[dict[str, Any]]], inflate: Callable[[bytes], bytes]
) -> dict[str, list[dict[str, Any]]]:
    return {
        table: [
            {"PutRequest": {"Item": _inflated_item(r["PutRequest"]["Item"], inflate)}}
            if "PutRequest" in r
            else r
            for r in requests
        ]
        for table, requests in requests_by_table.items()
    }

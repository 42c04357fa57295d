"""The benchmark's own measures: log bytes by kind, and write units without compression."""

from __future__ import annotations

import json
import zlib
from typing import Any

from benchmarks.harness import ByteCounter
from benchmarks.metering import ApiCall, TableShape, bill, uncompressed_calls
from chalicelib.telemetry import audit_fields

SHAPES = {"events": TableShape(key_names=("pk", "sk"))}


def _batch_write(items: list[dict[str, Any]]) -> ApiCall:
    return ApiCall(
        service="dynamodb",
        operation="BatchWriteItem",
        params={"RequestItems": {"events": [{"PutRequest": {"Item": i}} for i in items]}},
        response={},
        error_code=None,
    )


def test_log_bytes_are_split_into_emf_audit_and_other_lines() -> None:
    sink = ByteCounter()
    audit_line = json.dumps(audit_fields("delivered", event_id="e-1", interaction_id="i-1"))
    emf = '{"_aws":{"Timestamp":1}}'
    sink.write(audit_line + "\n")  # a logging handler: the line and its end in one write
    print(emf, file=sink)  # print(): the line, then "\n" on its own
    sink.write('{"level":"WARNING","message":"publish failures"}\n')
    assert sink.audit_bytes == len(audit_line) + 1
    assert sink.metric_bytes == len(emf) + 1
    assert sink.bytes == sink.audit_bytes + sink.metric_bytes + 49


def test_uncompressed_counterfactual_bills_the_inflated_blobs() -> None:
    body = json.dumps({"transcript": "the refund was declined " * 200}).encode()
    compressed = {"pk": {"S": "i"}, "sk": {"S": "E#1"}, "m": {"B": zlib.compress(body, 9)}}
    plain = {"pk": {"S": "i"}, "sk": {"S": "E#2"}, "m": {"B": b'{"a":1}'}}  # an older item
    opaque = {"pk": {"S": "i"}, "sk": {"S": "E#3"}, "m": {"B": b"\x00\x01 not zlib"}}
    calls = [_batch_write([compressed, plain, opaque])]
    as_stored = bill(calls, SHAPES)
    inflated = bill(uncompressed_calls(calls), SHAPES)
    assert as_stored.write_units == 3  # each item under 1 KB as written
    # The compressed one is 4.8 KB inflated: 5 units; the others are left as they are.
    assert inflated.write_units == 5 + 1 + 1
    assert calls[0].params["RequestItems"]["events"][0]["PutRequest"]["Item"] is compressed


def test_uncompressed_counterfactual_keeps_unprocessed_writes_unbilled() -> None:
    body = json.dumps({"words": ["refund"] * 800}).encode()
    item = {"pk": {"S": "i"}, "sk": {"S": "E#1"}, "m": {"B": zlib.compress(body)}}
    call = _batch_write([item])
    skipped = ApiCall(
        service=call.service,
        operation=call.operation,
        params=call.params,
        response={"UnprocessedItems": call.params["RequestItems"]},
        error_code=None,
    )
    assert bill(uncompressed_calls([skipped]), SHAPES).write_units == 0

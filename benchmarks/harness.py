"""Drive implementations with the same SQS batches against a moto server, and measure them.

The moto server runs in its own process: in the benchmark's process its request handling
would share the interpreter lock with the handlers (slowing the concurrent ones most) and its
CPU time would be counted as theirs by `time.process_time`. Against AWS the server is remote.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3

from benchmarks.accounting import (
    EVENTBRIDGE_CHUNK_BYTES,
    LAMBDA_PLATFORM_LOG_BYTES_PER_INVOCATION,
    PRICES,
    SQS_CHUNK_BYTES,
    Prices,
    UsagePerEvent,
    billed_chunks,
    billed_lambda_seconds,
    dynamodb_usd_per_million_by_table,
    eventbridge_billable_events,
    usd_per_million_events,
)
from benchmarks.metering import Bill, CallRecorder, bill, describe_tables, uncompressed_calls
from chalicelib.config import Settings, load_settings
from scripts.local.runner import LocalContext

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
BATCH_SIZE = 10
MAX_ROUNDS = 12  # the ingest queue's maxReceiveCount: what still fails then goes to the DLQ
LAMBDA_TIMEOUT_SECONDS = 30
# Lambda's SQS event source mapping, modelled equally for every implementation: one
# ReceiveMessage per batch handed to the function and one DeleteMessageBatch for the records
# it acknowledged (its idle long polls are left out: they do not depend on the handler).
ESM_RECEIVES_PER_BATCH = 1
# What Lambda's Python runtime writes for a record of a plain `logging` logger (its default
# handler's format): the baselines log through `logging`, so their lines carry this prefix.
LAMBDA_STDLIB_LOG_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t{request_id}\t%(message)s"
LAMBDA_STDLIB_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
EXAMPLE_REQUEST_ID = "3f9c2a4e-8b1d-4c6a-9e2f-5a7b0c1d2e3f"  # a Lambda request id's length
EMF_LINE_START = '{"_aws"'
AUDIT_LINE_START = '{"audit"'  # ours' audit records (chalicelib.telemetry)


# ---- moto in a child process ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server in a child process; yields its endpoint URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the moto server did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def point_at(endpoint: str) -> None:
    """Every boto3 client of this process talks to `endpoint` (the standard variable)."""
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }
    )


def fresh_stage(label: str) -> str:
    return f"{label}{uuid.uuid4().hex[:8]}"


def relay_settings(stage: str) -> Settings:
    return load_settings(
        {
            "RELAY_APP": "bench",
            "RELAY_STAGE": stage,
            "RELAY_ACCOUNT_ID": ACCOUNT_ID,
            "AWS_REGION": REGION,
            "RELAY_BACKOFF_BASE_SECONDS": "0",
            "RELAY_BACKOFF_MAX_SECONDS": "0",
            # The harness's mapping honours batchItemFailures (ReportBatchItemFailures on).
            "RELAY_BATCH_FAILURE_MODE": "report",
        }
    )


# ---- records ----------------------------------------------------------------------------------


def sqs_records(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Lambda-shaped SQS records, ids stable across implementations (receipt handles fake)."""
    return [
        {
            "messageId": f"msg-{index:07d}",
            "receiptHandle": f"fake-receipt-{index:07d}",
            "body": json.dumps(event),
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "awsRegion": REGION,
        }
        for index, event in enumerate(events)
    ]


def lambda_event(records: Sequence[dict[str, Any]], queue_arn: str, receive: int) -> dict:
    return {
        "Records": [
            {
                **record,
                "eventSourceARN": queue_arn,
                "attributes": {**record["attributes"], "ApproximateReceiveCount": str(receive)},
            }
            for record in records
        ]
    }


# ---- driving ----------------------------------------------------------------------------------


class Implementation(Protocol):
    name: str

    def handle(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]: ...

    def tables(self) -> list[str]: ...

    def consumer_topic_arns(self) -> list[str]: ...

    def close(self) -> None: ...


class ByteCounter(io.TextIOBase):
    """A write-only text stream that keeps only the number of bytes written (log volume),
    with the EMF metric documents and the audit records among them counted apart."""

    def __init__(self) -> None:
        self.bytes = 0
        self.metric_bytes = 0
        self.audit_bytes = 0
        self._last_kind: str | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        size = len(text.encode("utf-8", errors="replace"))
        self.bytes += size
        if text != "\n":  # print() writes the line's end on its own
            self._last_kind = next(
                (kind for kind in (EMF_LINE_START, AUDIT_LINE_START) if text.startswith(kind)),
                None,
            )
        if self._last_kind == EMF_LINE_START:
            self.metric_bytes += size
        elif self._last_kind == AUDIT_LINE_START:
            self.audit_bytes += size
        return len(text)


@contextlib.contextmanager
def captured_logs(sink: ByteCounter, logger_names: Sequence[str]) -> Iterator[None]:
    """Send stdout (EMF metrics) and the named loggers' output to `sink` while measuring."""
    redirected: list[tuple[logging.StreamHandler, Any]] = []
    added: list[tuple[logging.Logger, logging.Handler, int]] = []
    for name in logger_names:
        target = logging.getLogger(name)
        streams = [h for h in target.handlers if isinstance(h, logging.StreamHandler)]
        if streams:
            for handler in streams:
                redirected.append((handler, handler.setStream(sink)))
        else:
            handler = logging.StreamHandler(sink)
            handler.setFormatter(
                logging.Formatter(
                    LAMBDA_STDLIB_LOG_FORMAT.format(request_id=EXAMPLE_REQUEST_ID),
                    LAMBDA_STDLIB_DATE_FORMAT,
                )
            )
            added.append((target, handler, target.level))
            target.addHandler(handler)
            target.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(sink):
            yield
    finally:
        for handler, stream in redirected:
            handler.setStream(stream)
        for target, handler, level in added:
            target.removeHandler(handler)
            target.setLevel(level)


@dataclass
class DriveResult:
    records: int
    invocations: int = 0
    rounds: int = 0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    billed_lambda_seconds: float = 0.0
    esm_sqs_requests: int = 0
    undrained: int = 0
    log_bytes: int = 0  # what the handler wrote (log lines and EMF metrics)
    metric_log_bytes: int = 0  # the EMF part of log_bytes
    audit_log_bytes: int = 0  # the audit records among log_bytes (ours only)
    eventbridge_events: int = 0  # billable EventBridge events that brought the records
    ingest_sqs_sends: int = 0  # SQS requests of EventBridge's deliveries to the ingest queue
    failures_by_round: list[int] = field(default_factory=list)

    @property
    def platform_log_bytes(self) -> int:
        return self.invocations * LAMBDA_PLATFORM_LOG_BYTES_PER_INVOCATION


def arrival_charges(records: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """(billable EventBridge events, SQS send requests) of getting `records` into the queue:
    the same for every implementation, paid before any handler runs."""
    eventbridge = sends = 0
    for record in records:
        body = record["body"]
        sends += billed_chunks(len(body.encode("utf-8")), SQS_CHUNK_BYTES)
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        if isinstance(event, dict):
            eventbridge += eventbridge_billable_events(event)
        else:  # not an event at all: put on a custom bus as it is, billed by its size
            eventbridge += billed_chunks(len(body.encode("utf-8")), EVENTBRIDGE_CHUNK_BYTES)
    return eventbridge, sends


def drive(
    implementation: Implementation,
    records: Sequence[dict[str, Any]],
    queue_arn: str,
    logger_names: Sequence[str] = (),
    batch_size: int = BATCH_SIZE,
) -> DriveResult:
    """Feed `records` in batches of `batch_size`, then re-feed the failed ones until none fail
    (or the queue's maxReceiveCount is reached), timing the handler alone."""
    result = DriveResult(records=len(records))
    result.eventbridge_events, result.ingest_sqs_sends = arrival_charges(records)
    sink = ByteCounter()
    pending = list(records)
    gc.collect()
    with captured_logs(sink, logger_names):
        while pending and result.rounds < MAX_ROUNDS:
            result.rounds += 1
            failed: list[dict[str, Any]] = []
            for start in range(0, len(pending), batch_size):
                batch = pending[start : start + batch_size]
                event = lambda_event(batch, queue_arn, result.rounds)
                context = LocalContext(implementation.name, LAMBDA_TIMEOUT_SECONDS)
                cpu_started, started = time.process_time(), time.perf_counter()
                try:
                    response = implementation.handle(event, context)
                    failed_ids = {f["itemIdentifier"] for f in response["batchItemFailures"]}
                except Exception:  # the whole batch failed (Lambda retries all of it)
                    failed_ids = {record["messageId"] for record in batch}
                elapsed = time.perf_counter() - started
                result.cpu_seconds += time.process_time() - cpu_started
                result.wall_seconds += elapsed
                result.billed_lambda_seconds += billed_lambda_seconds(elapsed)
                result.invocations += 1
                result.esm_sqs_requests += ESM_RECEIVES_PER_BATCH
                if len(failed_ids) < len(batch):
                    result.esm_sqs_requests += 1  # DeleteMessageBatch of the acknowledged
                failed += [record for record in batch if record["messageId"] in failed_ids]
            result.failures_by_round.append(len(failed))
            pending = failed
    result.undrained = len(pending)
    result.log_bytes = sink.bytes
    result.metric_log_bytes = sink.metric_bytes
    result.audit_log_bytes = sink.audit_bytes
    return result


def table_role(table: str) -> str:
    """A table's name without the benchmark stage's prefix ("bench-<stage>-ledger" -> "ledger")."""
    parts = table.split("-", 2)
    return parts[2] if len(parts) == 3 and parts[0] == "bench" else table


# ---- measuring one implementation ---------------------------------------------------------


@dataclass
class Measurement:
    name: str
    drive: DriveResult
    bill: Bill
    uncompressed_bill: Bill  # the same calls with every binary attribute stored inflated
    consumers: int
    consumer_topics: list[str]


def measure(
    build: Callable[[CallRecorder], tuple[Implementation, str]],
    records: Sequence[dict[str, Any]],
    logger_names: Sequence[str] = (),
    batch_size: int = BATCH_SIZE,
) -> Measurement:
    """Build an implementation on a recorded session, drive it, and bill its calls."""
    recorder = CallRecorder()
    implementation, queue_arn = build(recorder)
    try:
        recorder.reset()  # only the handler's own calls count
        result = drive(implementation, records, queue_arn, logger_names, batch_size)
        recorder.enabled = False
        shapes = describe_tables(boto3.Session().client("dynamodb"), implementation.tables())
        topics = implementation.consumer_topic_arns()
        return Measurement(
            name=implementation.name,
            drive=result,
            bill=bill(recorder.calls, shapes),
            uncompressed_bill=bill(uncompressed_calls(recorder.calls), shapes),
            consumers=len(topics),
            consumer_topics=topics,
        )
    finally:
        implementation.close()


def summarize(measurement: Measurement, prices: Prices = PRICES) -> dict[str, Any]:
    """Per-event figures of one measurement (the shape of latest.json's implementations)."""
    run, charges = measurement.drive, measurement.bill
    events = run.records
    requests = {service: count / events for service, count in sorted(charges.requests.items())}
    # The handler's own calls plus the modelled ones around it: the event source mapping's
    # receives and deletes, and EventBridge's sends into the ingest queue.
    modelled_sqs = run.esm_sqs_requests + run.ingest_sqs_sends
    requests["sqs"] = (charges.requests.get("sqs", 0) + modelled_sqs) / events
    requests["total"] = sum(requests.values())
    operations = {op: count / events for op, count in sorted(charges.operations.items())}
    operations["sqs:ReceiveMessage+DeleteMessageBatch (event source mapping, modelled)"] = (
        run.esm_sqs_requests / events
    )
    operations["sqs:SendMessage (EventBridge target, modelled)"] = run.ingest_sqs_sends / events
    log_bytes = run.log_bytes + run.platform_log_bytes
    usage = UsagePerEvent(
        write_units=charges.write_units / events,
        read_units=charges.read_units / events,
        sns_publishes=charges.sns_billable / events,
        sqs_requests=requests["sqs"],
        invocations=run.invocations / events,
        lambda_seconds=run.billed_lambda_seconds / events,
        log_bytes=log_bytes / events,
        eventbridge_events=run.eventbridge_events / events,
    )
    usd = usd_per_million_events(usage, prices)
    # Getting the records into the ingest queue (EventBridge's charge and its SendMessage
    # calls) costs every implementation the same: the rest is what the design decides.
    arrival_usd = (
        usd["eventbridge"] + run.ingest_sqs_sends / events * prices.sqs_per_million_requests
    )
    write_by_table = {
        table_role(table): units / events
        for table, units in sorted(charges.write_units_by_table.items())
    }
    read_by_table = {
        table_role(table): units / events
        for table, units in sorted(charges.read_units_by_table.items())
    }
    delivered = sum(charges.sns_messages.get(arn, 0) for arn in measurement.consumer_topics)
    plain = measurement.uncompressed_bill
    return {
        "events_per_s": events / run.wall_seconds if run.wall_seconds else 0.0,
        "requests_per_event": requests,
        "requests_by_operation_per_event": operations,
        "ddb_write_units_per_event": usage.write_units,
        # What the same writes would cost with the stored blobs uncompressed.
        "ddb_write_units_per_event_uncompressed": plain.write_units / events,
        "ddb_write_units_by_table_per_event_uncompressed": {
            table_role(table): units / events
            for table, units in sorted(plain.write_units_by_table.items())
        },
        "ddb_average_item_bytes_uncompressed": {
            table_role(table): plain.bytes_written[table] / count
            for table, count in sorted(plain.items_written.items())
        },
        "ddb_index_write_units_per_event": charges.index_write_units / events,
        "ddb_read_units_per_event": usage.read_units,
        "sns_billable_per_event": usage.sns_publishes,
        "usd_per_million_events": usd["total"],
        "usd_per_million_events_by_service": {k: v for k, v in usd.items() if k != "total"},
        "usd_per_million_events_arrival": arrival_usd,
        "cpu_ms_per_event": run.cpu_seconds * 1000 / events,
        "lambda_ms_per_invocation": run.wall_seconds * 1000 / max(1, run.invocations),
        "invocations": run.invocations,
        "rounds": run.rounds,
        "failures_by_round": run.failures_by_round,
        "undrained": run.undrained,
        "ddb_write_units_by_table_per_event": write_by_table,
        "ddb_read_units_by_table_per_event": read_by_table,
        "usd_per_million_events_by_table": dynamodb_usd_per_million_by_table(
            write_by_table, read_by_table, prices
        ),
        "ddb_average_item_bytes": {
            table_role(table): charges.bytes_written[table] / count
            for table, count in sorted(charges.items_written.items())
        },
        "delivered_per_consumer": delivered / max(1, measurement.consumers),
        "log_bytes_per_event": log_bytes / events,
        "audit_log_bytes_per_event": run.audit_log_bytes / events,
        "log_bytes_per_event_by_kind": {
            "lines": (run.log_bytes - run.metric_log_bytes) / events,  # audit records included
            "audit": run.audit_log_bytes / events,
            "emf_metrics": run.metric_log_bytes / events,
            "lambda_platform": run.platform_log_bytes / events,
        },
        "eventbridge_billable_per_event": usage.eventbridge_events,
    }

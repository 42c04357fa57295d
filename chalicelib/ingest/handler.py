"""The `ingest` Lambda: SQS records in, the Lambda response out.

Failure modes (`RELAY_BATCH_FAILURE_MODE`):

- `raise`, the default: delete the acknowledged records ourselves (DeleteMessageBatch), then
  raise when any record failed. That is right whatever the event source mapping says: without
  ReportBatchItemFailures Lambda returns the whole batch to the queue on the error, and only the
  failed records are still there to come back; with it, a raised error is a whole-batch failure,
  which again returns only what was not deleted. Detecting the mapping's setting instead would
  need lambda:ListEventSourceMappings at run time (a permission and a request per cold start)
  and would still be wrong in the window between `chalice deploy`, which creates the mapping,
  and the provisioning step that turns ReportBatchItemFailures on. The price: a batch with a
  failure counts as a function error in Lambda's metrics (and slows the mapping's scaling), and
  one DeleteMessageBatch request per ten acknowledged records of such a batch.
- `report`: return `batchItemFailures` and let Lambda delete the rest. Cheaper and quieter, but
  on a mapping without ReportBatchItemFailures Lambda deletes the whole batch, failed records
  included: set it only where the mapping's setting is verified.

Either way a failed record's visibility is first shortened to its backoff, so a retry takes
seconds, not the whole visibility timeout.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from chalicelib.aws import QUEUE_URLS, AwsFailure, chunked, compute_backoff, error_code
from chalicelib.errors import DependencyUnavailable
from chalicelib.ingest.batch import IngestBatch
from chalicelib.model import SqsBatchResponse, SqsRecord
from chalicelib.runtime import Runtime
from chalicelib.telemetry import logger

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        DeleteMessageBatchRequestEntryTypeDef,
    )

MAX_ENTRIES_PER_REQUEST = 10  # SQS batch requests


class BatchFailed(DependencyUnavailable):
    """Raised in "raise" mode when records failed: the acknowledged ones were deleted already,
    so only the failed ones come back."""


def backoff_seconds(receive_count: int, base: int, cap: int) -> int:
    """Visibility before the next try: grows with the receive count, so retries take seconds
    at first and back off while a dependency stays down."""
    return math.ceil(compute_backoff(receive_count - 1, base=base, cap=cap, jitter=None))


def _per_queue(runtime: Runtime, records: Sequence[SqsRecord]) -> dict[str, list[SqsRecord]]:
    grouped: dict[str, list[SqsRecord]] = defaultdict(list)
    for record in records:
        grouped[QUEUE_URLS.url_of_arn(runtime.sqs, record.source_arn)].append(record)
    return grouped


def back_off(runtime: Runtime, records: Sequence[SqsRecord]) -> None:
    """Shorten the failed records' visibility to their backoff; a failure here only means
    the retry waits for the queue's own visibility timeout."""
    settings = runtime.settings
    try:
        for url, group in _per_queue(runtime, records).items():
            for chunk in chunked(group, MAX_ENTRIES_PER_REQUEST):
                entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
                    {
                        "Id": str(n),
                        "ReceiptHandle": record.receipt_handle,
                        "VisibilityTimeout": backoff_seconds(
                            record.receive_count,
                            settings.backoff_base_seconds,
                            settings.backoff_max_seconds,
                        ),
                    }
                    for n, record in enumerate(chunk)
                ]
                runtime.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
    except AwsFailure as error:
        logger.warning("could not shorten visibility", extra={"error": error_code(error)})


def delete_acknowledged(runtime: Runtime, records: Sequence[SqsRecord]) -> list[str]:
    """Delete the acknowledged records before failing the batch. Returns the message ids that
    could not be deleted: they come back and are found to be duplicates (or quarantined again),
    never lost."""
    undeleted: list[str] = []
    try:
        queues = _per_queue(runtime, records)
    except AwsFailure:
        return [record.message_id for record in records]
    for url, group in queues.items():
        for chunk in chunked(group, MAX_ENTRIES_PER_REQUEST):
            entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                {"Id": str(n), "ReceiptHandle": record.receipt_handle}
                for n, record in enumerate(chunk)
            ]
            try:
                response = runtime.sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            except AwsFailure:
                undeleted += [record.message_id for record in chunk]
                continue
            undeleted += [chunk[int(f["Id"])].message_id for f in response.get("Failed", [])]
    return undeleted


def handle_ingest(raw_event: dict[str, Any], context: Any, runtime: Runtime) -> SqsBatchResponse:
    """The `ingest` Lambda: deletes what succeeded and raises when anything failed ("raise",
    the default), or returns batchItemFailures ("report")."""
    records = [SqsRecord.from_lambda(raw) for raw in raw_event.get("Records", [])]
    outcome = IngestBatch(runtime, records, context).run()
    failed = [record for record in records if record.message_id in outcome.failed]
    if failed:
        back_off(runtime, failed)
    if failed and runtime.settings.batch_failure_mode == "raise":
        acknowledged = [record for record in records if record.message_id not in outcome.failed]
        undeleted = delete_acknowledged(runtime, acknowledged)
        if undeleted:
            logger.warning("acknowledged records not deleted", extra={"count": len(undeleted)})
        raise BatchFailed(f"{len(failed)} of {len(records)} records failed and will be retried")
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in outcome.failed]}

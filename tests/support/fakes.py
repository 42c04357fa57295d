"""In-memory fakes of the low-level AWS calls the ingest pipeline makes, with injectable faults.

For property tests that need thousands of invocations and failure modes the moto server cannot
produce (throttling, per-entry publish failures, a process dying between two calls). Each fake
honours the service semantics the pipeline relies on, and refuses loudly what it does not model
(an unknown condition expression, a batch over the service limit), so a pipeline change that
leans on something new fails here instead of passing against a fake that guessed.

    FakeDynamoDB  batch_get_item, put_item (the ledger's one condition), batch_write_item
    FakeSns       publish_batch, every accepted message kept per topic, in order
    FakeSqs       queues with visibility and receive counts: the event source mapping's side
                  (receive, delete) and the function's (change_message_visibility_batch, ...)
    FakeAws       a real Runtime around them (`build`), or around the moto server's DynamoDB
                  and SNS behind the same fault hooks (`around`: FaultyDynamoDB, FaultySns)

Faults come from a `Faults` object asked before and after every call: raise a `ClientError`
(`client_error`), a `SimulatedCrash` (the invocation dies: nothing after that point runs), fail
single PublishBatch entries, or leave BatchWriteItem/BatchGetItem work unprocessed.
`ScriptedFaults` declares them as rules. `fault_hook` answers calls of a real botocore client
instead (moto tests).
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from chalicelib.config import Settings
from chalicelib.model import SNS_MAX_MESSAGE_BYTES, sns_message_size
from chalicelib.runtime import Runtime
from chalicelib.stack import stack_spec
from tests.support.message_schemas import check_relay_message

# The ledger's conditions: a claim (on a record that may not exist yet), a release.
LEDGER_CONDITIONS = ("attribute_not_exists(pk) OR v = :v", "v = :v")
MAX_GET_KEYS = 100
MAX_WRITE_ITEMS = 25
MAX_PUBLISH_ENTRIES = 10
MAX_SQS_BATCH = 10


class SimulatedCrash(BaseException):
    """The invocation died here (timeout, out of memory): the call it interrupts has no effect.

    A BaseException, like the signal a dying Lambda gets: no `except Exception` may swallow it.
    """


def client_error(code: str, operation: str, message: str = "", **fields: Any) -> ClientError:
    """A ClientError exactly as botocore builds one from a service error response."""
    status = 400 if code not in ("InternalError", "InternalServerError", "InternalFailure") else 500
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": message or code},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **fields,
    }
    return ClientError(response, operation)  # type: ignore[arg-type]


def throttling(operation: str) -> ClientError:
    return client_error("ThrottlingException", operation, "Rate exceeded")


def internal_error(operation: str) -> ClientError:
    return client_error("InternalError", operation, "We encountered an internal error")


@dataclass(frozen=True)
class Call:
    """One API call as a fake (or a fault hook) sees it."""

    service: str  # "dynamodb", "sns", "sqs"
    operation: str  # the API's name: "PutItem", "PublishBatch", ...
    params: Mapping[str, Any]
    thread: str = field(default_factory=lambda: threading.current_thread().name)


class Faults:
    """No faults. Subclass (or use `ScriptedFaults`) to inject them; every hook may raise."""

    def before(self, call: Call) -> None:
        """Before the call has any effect: raise to fail it (or to crash there)."""

    def after(self, call: Call) -> None:
        """After the call took effect: raise to lose its response (a timeout after the write)."""

    def failed_entries(self, call: Call) -> dict[str, str]:
        """PublishBatch entries (by Id) that fail, with their error code."""
        return {}

    def unprocessed(self, call: Call, count: int) -> set[int]:
        """Indexes of BatchWriteItem puts / BatchGetItem keys to leave unprocessed."""
        return set()


@dataclass
class Rule:
    """One scripted fault: applies to calls matching `service`, `operation` and `when`."""

    service: str
    operation: str
    when: Callable[[Call], bool] = lambda call: True
    times: int | None = 1  # None: every matching call
    error: BaseException | None = None  # raised before the call takes effect
    error_after: BaseException | None = None  # raised after it took effect
    entry_code: str | None = None  # PublishBatch: every entry fails with this code
    unprocessed: bool = False  # BatchWriteItem / BatchGetItem: everything unprocessed

    def matches(self, call: Call) -> bool:
        return (
            self.times != 0
            and call.service == self.service
            and call.operation == self.operation
            and self.when(call)
        )

    def use(self) -> None:
        if self.times is not None:
            self.times -= 1


class ScriptedFaults(Faults):
    """Faults from a list of rules; the first matching rule of a kind applies, then counts down.

    `calls` records every call seen, in order (thread-safe), for tests that count requests.
    """

    def __init__(self, *rules: Rule) -> None:
        self.rules = list(rules)
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def _first(self, call: Call, kind: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if getattr(rule, kind) and rule.matches(call):
                    rule.use()
                    return rule
        return None

    def before(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
        rule = self._first(call, "error")
        if rule is not None and rule.error is not None:
            raise rule.error

    def after(self, call: Call) -> None:
        rule = self._first(call, "error_after")
        if rule is not None and rule.error_after is not None:
            raise rule.error_after

    def failed_entries(self, call: Call) -> dict[str, str]:
        rule = self._first(call, "entry_code")
        if rule is None or rule.entry_code is None:
            return {}
        return {entry["Id"]: rule.entry_code for entry in call.params["PublishBatchRequestEntries"]}

    def unprocessed(self, call: Call, count: int) -> set[int]:
        return set(range(count)) if self._first(call, "unprocessed") else set()


class _Fake:
    service = ""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.lock = threading.RLock()

    def _call(self, operation: str, params: Mapping[str, Any]) -> Call:
        call = Call(self.service, operation, params)
        self.faults.before(call)
        return call


# --------------------------------------------------------------------------- DynamoDB


@dataclass(frozen=True)
class KeySchema:
    hash_key: str
    range_key: str | None = None

    def key_of(self, item: Mapping[str, Any]) -> tuple[str, ...]:
        names = [self.hash_key] + ([self.range_key] if self.range_key else [])
        missing = [n for n in names if n not in item]
        if missing:
            raise client_error(
                "ValidationException", "", f"One of the required keys was not given: {missing}"
            )
        return tuple(json.dumps(item[name], sort_keys=True) for name in names)


def _item_bytes(item: Mapping[str, Any]) -> int:
    size = 0
    for name, value in item.items():
        ((kind, raw),) = value.items()
        raw_size = len(raw) if kind == "B" else len(json.dumps(raw, default=str).encode())
        size += len(name.encode()) + raw_size
    return size


class FakeDynamoDB(_Fake):
    """Tables of low-level items (`{"S": ...}`), keyed as their key schema says."""

    service = "dynamodb"

    def __init__(self, tables: Mapping[str, KeySchema], faults: Faults | None = None) -> None:
        super().__init__(faults or Faults())
        self.schemas = dict(tables)
        self.tables: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {
            name: {} for name in tables
        }
        # (table, key) -> the thread that first wrote the item: which invocation stored it
        self.first_writer: dict[tuple[str, tuple[str, ...]], str] = {}

    def _table(self, name: str) -> dict[tuple[str, ...], dict[str, Any]]:
        if name not in self.tables:
            raise client_error(
                "ResourceNotFoundException", "", f"Requested resource not found: {name}"
            )
        return self.tables[name]

    # The pipeline's calls ----------------------------------------------------------------
    def batch_get_item(self, RequestItems: Mapping[str, Any]) -> dict[str, Any]:
        call = self._call("BatchGetItem", {"RequestItems": RequestItems})
        requested = [
            (table, key) for table, spec in RequestItems.items() for key in spec.get("Keys", [])
        ]
        if not requested or len(requested) > MAX_GET_KEYS:
            raise client_error(
                "ValidationException",
                "BatchGetItem",
                f"Too many items requested for the BatchGetItem call: {len(requested)}",
            )
        left = self.faults.unprocessed(call, len(requested))
        responses: dict[str, list[dict[str, Any]]] = {}
        unprocessed: dict[str, Any] = {}
        with self.lock:
            for table, spec in RequestItems.items():
                schema = self.schemas.get(table)
                self._table(table)
                keys = [schema.key_of(key) for key in spec["Keys"]] if schema else []
                if len(set(keys)) != len(keys):
                    raise client_error(
                        "ValidationException",
                        "BatchGetItem",
                        "Provided list of item keys contains duplicates",
                    )
            for index, (table, key) in enumerate(requested):
                spec = RequestItems[table]
                if index in left:
                    entry = unprocessed.setdefault(
                        table, {k: v for k, v in spec.items() if k != "Keys"} | {"Keys": []}
                    )
                    entry["Keys"].append(key)
                    continue
                item = self.tables[table].get(self.schemas[table].key_of(key))
                if item is not None:
                    found = _project(item, spec.get("ProjectionExpression"))
                    responses.setdefault(table, []).append(found)
        self.faults.after(call)
        return {"Responses": responses, "UnprocessedKeys": unprocessed}

    def put_item(
        self,
        TableName: str,
        Item: Mapping[str, Any],
        ConditionExpression: str | None = None,
        ExpressionAttributeValues: Mapping[str, Any] | None = None,
        ReturnValuesOnConditionCheckFailure: str = "NONE",
    ) -> dict[str, Any]:
        call = self._call(
            "PutItem",
            {
                "TableName": TableName,
                "Item": Item,
                "ConditionExpression": ConditionExpression,
                "ExpressionAttributeValues": ExpressionAttributeValues,
            },
        )
        with self.lock:
            rows = self._table(TableName)
            key = self.schemas[TableName].key_of(Item)
            old = rows.get(key)
            if ConditionExpression is not None and not _ledger_condition_holds(
                ConditionExpression, old, ExpressionAttributeValues or {}
            ):
                fields = (
                    {"Item": copy.deepcopy(old)}
                    if (ReturnValuesOnConditionCheckFailure == "ALL_OLD" and old is not None)
                    else {}
                )
                raise client_error(
                    "ConditionalCheckFailedException",
                    "PutItem",
                    "The conditional request failed",
                    **fields,
                )
            rows[key] = copy.deepcopy(dict(Item))
            self.first_writer.setdefault((TableName, key), call.thread)
        self.faults.after(call)
        return {}

    def update_item(
        self,
        TableName: str,
        Key: Mapping[str, Any],
        UpdateExpression: str,
        ExpressionAttributeNames: Mapping[str, str],
        ExpressionAttributeValues: Mapping[str, Any],
        ReturnValues: str = "NONE",
    ) -> dict[str, Any]:
        """The arrival-mark update only: `SET <name> = if_not_exists(<name>, <value>), ...,
        <name> = <value> ADD v :one`, unconditional, returning ALL_NEW."""
        call = self._call(
            "UpdateItem",
            {
                "TableName": TableName,
                "Key": Key,
                "UpdateExpression": UpdateExpression,
                "ExpressionAttributeNames": ExpressionAttributeNames,
                "ExpressionAttributeValues": ExpressionAttributeValues,
            },
        )
        sets, added = UpdateExpression.removeprefix("SET ").split(" ADD ")
        names = dict(ExpressionAttributeNames)
        with self.lock:
            rows = self._table(TableName)
            key = self.schemas[TableName].key_of(Key)
            item = copy.deepcopy(rows.get(key) or dict(Key))
            for target, kept, value in re.findall(
                r"(#?\w+) = (if_not_exists\(#?\w+, )?(:\w+)\)?", sets
            ):
                name = names.get(target, target)
                if kept:
                    item.setdefault(name, copy.deepcopy(ExpressionAttributeValues[value]))
                else:
                    item[name] = copy.deepcopy(ExpressionAttributeValues[value])
            counter, amount = added.split(" ")
            current = int(item.get(counter, {"N": "0"})["N"])
            item[counter] = {"N": str(current + int(ExpressionAttributeValues[amount]["N"]))}
            rows[key] = item
            self.first_writer.setdefault((TableName, key), call.thread)
            new = copy.deepcopy(item)
        self.faults.after(call)
        return {"Attributes": new} if ReturnValues == "ALL_NEW" else {}

    def batch_write_item(self, RequestItems: Mapping[str, Any]) -> dict[str, Any]:
        call = self._call("BatchWriteItem", {"RequestItems": RequestItems})
        writes = [(table, request) for table, rs in RequestItems.items() for request in rs]
        if not writes or len(writes) > MAX_WRITE_ITEMS:
            raise client_error(
                "ValidationException",
                "BatchWriteItem",
                f"Member must have length less than or equal to 25: {len(writes)}",
            )
        with self.lock:
            seen: set[tuple[str, tuple[str, ...]]] = set()
            for table, request in writes:
                self._table(table)
                item = request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"]
                key = (table, self.schemas[table].key_of(item))
                if key in seen:
                    raise client_error(
                        "ValidationException",
                        "BatchWriteItem",
                        "Provided list of item keys contains duplicates",
                    )
                seen.add(key)
                if _item_bytes(item) > 400 * 1024:
                    raise client_error(
                        "ValidationException", "BatchWriteItem", "Item size has exceeded 400 KB"
                    )
            left = self.faults.unprocessed(call, len(writes))
            unprocessed: dict[str, list[Any]] = {}
            for index, (table, request) in enumerate(writes):
                if index in left:
                    unprocessed.setdefault(table, []).append(request)
                elif "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    key = self.schemas[table].key_of(item)
                    self.tables[table][key] = copy.deepcopy(dict(item))
                    self.first_writer.setdefault((table, key), call.thread)
                else:
                    key = self.schemas[table].key_of(request["DeleteRequest"]["Key"])
                    self.tables[table].pop(key, None)
        self.faults.after(call)
        return {"UnprocessedItems": unprocessed}

    # Inspection --------------------------------------------------------------------------
    def get(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        with self.lock:
            item = self.tables[table].get(self.schemas[table].key_of(key))
            return copy.deepcopy(item)

    def writer_of(self, table: str, key: Mapping[str, Any]) -> str | None:
        with self.lock:
            return self.first_writer.get((table, self.schemas[table].key_of(key)))

    def items(self, table: str) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(list(self.tables[table].values()))


def _ledger_condition_holds(
    expression: str, old: Mapping[str, Any] | None, values: Mapping[str, Any]
) -> bool:
    if expression not in LEDGER_CONDITIONS:
        raise NotImplementedError(f"the fake models only {LEDGER_CONDITIONS}, got {expression!r}")
    if old is None:
        return expression == LEDGER_CONDITIONS[0]
    expected = values[":v"]
    current = old.get("v")
    return current is not None and "N" in current and int(current["N"]) == int(expected["N"])


def _project(item: Mapping[str, Any], projection: str | None) -> dict[str, Any]:
    if not projection:
        return copy.deepcopy(dict(item))
    names = [name.strip() for name in projection.split(",")]
    return {name: copy.deepcopy(item[name]) for name in names if name in item}


# --------------------------------------------------------------------------- SNS


@dataclass(frozen=True)
class Delivery:
    """One message SNS accepted, as a subscriber with raw message delivery would see it."""

    topic_arn: str
    body: str
    attributes: dict[str, dict[str, str]]
    group_id: str | None
    dedup_id: str | None
    thread: str

    def json(self) -> Any:
        return check_relay_message(json.loads(self.body))


class FakeSns(_Fake):
    service = "sns"

    def __init__(self, topic_arns: Iterable[str], faults: Faults | None = None) -> None:
        super().__init__(faults or Faults())
        self.deliveries: dict[str, list[Delivery]] = {arn: [] for arn in topic_arns}

    def publish_batch(
        self,
        TopicArn: str,
        PublishBatchRequestEntries: Sequence[Mapping[str, Any]],
    ) -> dict[str, Any]:
        entries = PublishBatchRequestEntries
        call = self._call(
            "PublishBatch", {"TopicArn": TopicArn, "PublishBatchRequestEntries": entries}
        )
        if TopicArn not in self.deliveries:
            raise client_error("NotFound", "PublishBatch", "Topic does not exist")
        if not entries or len(entries) > MAX_PUBLISH_ENTRIES:
            raise client_error("TooManyEntriesInBatchRequest", "PublishBatch")
        if len({e["Id"] for e in entries}) != len(entries):
            raise client_error("BatchEntryIdsNotDistinct", "PublishBatch")
        total = sum(sns_message_size(e["Message"], e.get("MessageAttributes", {})) for e in entries)
        if total > SNS_MAX_MESSAGE_BYTES:
            # SNS refuses the whole request when the entries together exceed 256 KB.
            raise client_error("BatchRequestTooLong", "PublishBatch", f"{total} bytes")
        fifo = TopicArn.endswith(".fifo")
        failed_codes = self.faults.failed_entries(call)
        successful, failed = [], []
        with self.lock:
            for entry in entries:
                code = failed_codes.get(entry["Id"])
                if fifo and not ("MessageGroupId" in entry and "MessageDeduplicationId" in entry):
                    code = "InvalidParameter"
                if code is not None:
                    failed.append({"Id": entry["Id"], "Code": code, "SenderFault": False})
                    continue
                self.deliveries[TopicArn].append(
                    Delivery(
                        topic_arn=TopicArn,
                        body=entry["Message"],
                        attributes=copy.deepcopy(dict(entry.get("MessageAttributes", {}))),
                        group_id=entry.get("MessageGroupId"),
                        dedup_id=entry.get("MessageDeduplicationId"),
                        thread=call.thread,
                    )
                )
                successful.append({"Id": entry["Id"], "MessageId": uuid.uuid4().hex})
        self.faults.after(call)
        return {"Successful": successful, "Failed": failed}

    def messages(self, topic_arn: str) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries[topic_arn])


# --------------------------------------------------------------------------- SQS


class FakeClock:
    """The time every fake and the pipeline (through `utc_now`) agree on; moves when told."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 29, 9, 0, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)

    def advance_to(self, moment: datetime) -> None:
        with self._lock:
            self._now = max(self._now, moment)


@dataclass
class QueuedMessage:
    message_id: str
    body: str
    receive_count: int = 0
    visible_at: datetime = field(default_factory=lambda: datetime.min.replace(tzinfo=UTC))
    receipt_handle: str | None = None


class FakeQueue:
    def __init__(self, name: str, arn: str, url: str, visibility_timeout: int) -> None:
        self.name, self.arn, self.url = name, arn, url
        self.visibility_timeout = visibility_timeout
        self.messages: dict[str, QueuedMessage] = {}


class FakeSqs(_Fake):
    """Queues with SQS's visibility model: a received message is hidden for the visibility
    timeout under a fresh receipt handle; only the latest handle may delete it or change it."""

    service = "sqs"

    def __init__(
        self, clock: FakeClock, region: str, account_id: str, faults: Faults | None = None
    ) -> None:
        super().__init__(faults or Faults())
        self.clock = clock
        self.region, self.account_id = region, account_id
        self.queues: dict[str, FakeQueue] = {}
        self._handles = itertools.count(1)

    def create_queue(self, name: str, visibility_timeout: int = 30) -> FakeQueue:
        url = f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{name}"
        arn = f"arn:aws:sqs:{self.region}:{self.account_id}:{name}"
        queue = self.queues.setdefault(url, FakeQueue(name, arn, url, visibility_timeout))
        return queue

    # The event source mapping's side (not boto3's API) -------------------------------------
    def send(self, url: str, body: str) -> str:
        message = QueuedMessage(uuid.uuid4().hex, body)
        with self.lock:
            self.queues[url].messages[message.message_id] = message
        return message.message_id

    def receive(
        self, url: str, limit: int, pick: Callable[[list[QueuedMessage]], list[QueuedMessage]]
    ) -> list[QueuedMessage]:
        """Up to `limit` visible messages, chosen by `pick` (SQS gives no order guarantee)."""
        now = self.clock.now()
        with self.lock:
            queue = self.queues[url]
            visible = [m for m in queue.messages.values() if m.visible_at <= now]
            chosen = pick(visible)[:limit]
            for message in chosen:
                message.receive_count += 1
                message.receipt_handle = f"rh-{next(self._handles)}"
                message.visible_at = now + timedelta(seconds=queue.visibility_timeout)
            return [copy.copy(m) for m in chosen]

    def lambda_event(self, url: str, messages: Sequence[QueuedMessage]) -> dict[str, Any]:
        arn = self.queues[url].arn
        return {
            "Records": [
                {
                    "messageId": m.message_id,
                    "receiptHandle": m.receipt_handle,
                    "body": m.body,
                    "attributes": {"ApproximateReceiveCount": str(m.receive_count)},
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": self.region,
                }
                for m in messages
            ]
        }

    def delete(self, url: str, receipt_handles: Iterable[str]) -> None:
        handles = set(receipt_handles)
        with self.lock:
            queue = self.queues[url]
            for key in [k for k, m in queue.messages.items() if m.receipt_handle in handles]:
                del queue.messages[key]

    def pending(self, url: str) -> list[QueuedMessage]:
        with self.lock:
            return [copy.copy(m) for m in self.queues[url].messages.values()]

    # The function's calls -----------------------------------------------------------------
    def _by_url(self, url: str) -> FakeQueue:
        if url not in self.queues:
            raise client_error("AWS.SimpleQueueService.NonExistentQueue", "", "no such queue")
        return self.queues[url]

    def get_queue_url(
        self,
        QueueName: str,
        QueueOwnerAWSAccountId: str | None = None,
    ) -> dict[str, str]:
        self._call("GetQueueUrl", {"QueueName": QueueName})
        for queue in self.queues.values():
            if queue.name == QueueName:
                return {"QueueUrl": queue.url}
        raise client_error("AWS.SimpleQueueService.NonExistentQueue", "GetQueueUrl")

    def _entries(self, operation: str, url: str, entries: Sequence[Mapping[str, Any]]) -> Call:
        call = self._call(operation, {"QueueUrl": url, "Entries": entries})
        if not entries or len(entries) > MAX_SQS_BATCH:
            raise client_error("AWS.SimpleQueueService.TooManyEntriesInBatchRequest", operation)
        if len({e["Id"] for e in entries}) != len(entries):
            raise client_error("AWS.SimpleQueueService.BatchEntryIdsNotDistinct", operation)
        return call

    def change_message_visibility_batch(
        self,
        QueueUrl: str,
        Entries: Sequence[Mapping[str, Any]],
    ) -> dict[str, Any]:
        call = self._entries("ChangeMessageVisibilityBatch", QueueUrl, Entries)
        now = self.clock.now()
        successful, failed = [], []
        with self.lock:
            queue = self._by_url(QueueUrl)
            by_handle = {m.receipt_handle: m for m in queue.messages.values()}
            for entry in Entries:
                message = by_handle.get(entry["ReceiptHandle"])
                if message is None:
                    failed.append({"Id": entry["Id"], "Code": "ReceiptHandleIsInvalid"})
                    continue
                message.visible_at = now + timedelta(seconds=int(entry["VisibilityTimeout"]))
                successful.append({"Id": entry["Id"]})
        self.faults.after(call)
        return {"Successful": successful, "Failed": failed}

    def delete_message_batch(
        self,
        QueueUrl: str,
        Entries: Sequence[Mapping[str, Any]],
    ) -> dict[str, Any]:
        call = self._entries("DeleteMessageBatch", QueueUrl, Entries)
        successful, failed = [], []
        with self.lock:
            queue = self._by_url(QueueUrl)
            by_handle = {m.receipt_handle: key for key, m in queue.messages.items()}
            for entry in Entries:
                key = by_handle.get(entry["ReceiptHandle"])
                if key is None:
                    failed.append({"Id": entry["Id"], "Code": "ReceiptHandleIsInvalid"})
                    continue
                del queue.messages[key]
                successful.append({"Id": entry["Id"]})
        self.faults.after(call)
        return {"Successful": successful, "Failed": failed}


# --------------------------------------------------------------------------- runtime


class InlineExecutor(ThreadPoolExecutor):
    """Runs each task at submit, on the caller's thread: one invocation = one thread, so a
    test can interleave invocations deterministically at the fakes' calls."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # as ThreadPoolExecutor's workers do
            future.set_exception(error)
        return future


@functools.lru_cache(maxsize=4)
def _session(region: str) -> boto3.Session:
    # Only for ARNs (the partition of the region): one per process, as loading botocore's
    # endpoint data costs more than a whole property-test example.
    return boto3.Session(region_name=region)


@dataclass
class FakeAws:
    """One stage's AWS as the pipeline sees it: a Runtime whose clients are the fakes
    (`build`), or the moto server's DynamoDB and SNS behind the same fault hooks (`around`).
    SQS is always the model queue: tests move its clock."""

    settings: Settings
    clock: FakeClock
    faults: Faults
    dynamodb: FakeDynamoDB | FaultyDynamoDB
    sns: FakeSns | FaultySns
    sqs: FakeSqs
    runtime: Runtime
    ingest_queue: FakeQueue

    @classmethod
    def build(
        cls,
        settings: Settings,
        faults: Faults | None = None,
        clock: FakeClock | None = None,
        executor: ThreadPoolExecutor | None = None,
        visibility_timeout: int = 60,
    ) -> FakeAws:
        faults = faults or Faults()
        clock = clock or FakeClock()
        account_id = settings.account_id or "123456789012"
        spec = stack_spec(settings)
        dynamodb = FakeDynamoDB(
            {t.name: KeySchema(t.hash_key, t.range_key) for t in spec.tables}, faults
        )
        runtime = Runtime(
            settings=settings,
            session=_session(settings.region),
            account_id=account_id,
            executor=executor or InlineExecutor(),
        )
        topics = [*runtime.consumer_topics.values(), runtime.quarantine_topic]
        sns = FakeSns(topics, faults)
        sqs = FakeSqs(clock, settings.region, account_id, faults)
        runtime._clients.update({"dynamodb": dynamodb, "sns": sns, "sqs": sqs})
        queue = sqs.create_queue(settings.names.ingest_queue, visibility_timeout)
        return cls(settings, clock, faults, dynamodb, sns, sqs, runtime, queue)

    @classmethod
    def around(
        cls,
        runtime: Runtime,
        faults: Faults,
        clock: FakeClock,
        visibility_timeout: int = 60,
    ) -> FakeAws:
        """A copy of a real runtime (moto) whose DynamoDB and SNS calls pass the fault hooks,
        with the model SQS queue, and an inline executor (one thread per invocation)."""
        settings = runtime.settings
        spec = stack_spec(settings)
        schemas = {t.name: KeySchema(t.hash_key, t.range_key) for t in spec.tables}
        dynamodb = FaultyDynamoDB(runtime.session.client("dynamodb"), schemas, faults)
        topics = [*runtime.consumer_topics.values(), runtime.quarantine_topic]
        sns = FaultySns(runtime.session.client("sns"), topics, faults)
        sqs = FakeSqs(clock, settings.region, runtime.account_id, faults)
        faulty = Runtime(
            settings=settings,
            session=runtime.session,
            account_id=runtime.account_id,
            executor=InlineExecutor(),
        )
        faulty._clients.update({"dynamodb": dynamodb, "sns": sns, "sqs": sqs})
        queue = sqs.create_queue(settings.names.ingest_queue, visibility_timeout)
        return cls(settings, clock, faults, dynamodb, sns, sqs, faulty, queue)

    def consumer_messages(self) -> dict[str, list[Delivery]]:
        topics = self.runtime.consumer_topics
        return {consumer: self.sns.messages(arn) for consumer, arn in topics.items()}

    def quarantine_messages(self) -> list[Delivery]:
        return self.sns.messages(self.runtime.quarantine_topic)


# --------------------------------------------------------------------------- real clients


def _split(
    requested: Sequence[tuple[str, Any]], left: set[int]
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """(table, request) pairs into the ones to send and the ones a fault leaves unprocessed."""
    send: dict[str, list[Any]] = {}
    kept: dict[str, list[Any]] = {}
    for index, (table, request) in enumerate(requested):
        (kept if index in left else send).setdefault(table, []).append(request)
    return send, kept


class FaultyDynamoDB(_Fake):
    """A real DynamoDB client (moto) behind the fakes' fault hooks: DynamoDB's own semantics
    (the condition, ALL_OLD on its failure), the fakes' faults and inspection helpers."""

    service = "dynamodb"

    def __init__(self, client: Any, schemas: Mapping[str, KeySchema], faults: Faults) -> None:
        super().__init__(faults)
        self.client = client
        self.schemas = dict(schemas)
        self.first_writer: dict[tuple[str, tuple[str, ...]], str] = {}

    def _wrote(self, table: str, item: Mapping[str, Any], thread: str) -> None:
        with self.lock:
            self.first_writer.setdefault((table, self.schemas[table].key_of(item)), thread)

    def batch_get_item(self, RequestItems: Mapping[str, Any]) -> dict[str, Any]:
        call = self._call("BatchGetItem", {"RequestItems": RequestItems})
        requested = [(t, k) for t, spec in RequestItems.items() for k in spec["Keys"]]
        send, kept = _split(requested, self.faults.unprocessed(call, len(requested)))
        response: dict[str, Any] = {"Responses": {}, "UnprocessedKeys": {}}
        if send:
            request = {
                t: {k: v for k, v in RequestItems[t].items() if k != "Keys"} | {"Keys": keys}
                for t, keys in send.items()
            }
            response = self.client.batch_get_item(RequestItems=request)
        unprocessed = dict(response.get("UnprocessedKeys") or {})
        for table, keys in kept.items():
            spec = {k: v for k, v in RequestItems[table].items() if k != "Keys"}
            entry = unprocessed.setdefault(table, spec | {"Keys": []})
            entry["Keys"] = [*entry["Keys"], *keys]
        self.faults.after(call)
        return {"Responses": response.get("Responses", {}), "UnprocessedKeys": unprocessed}

    def put_item(self, **params: Any) -> dict[str, Any]:
        call = self._call("PutItem", params)
        response = self.client.put_item(**params)
        self._wrote(params["TableName"], params["Item"], call.thread)
        self.faults.after(call)
        return response

    def update_item(self, **params: Any) -> dict[str, Any]:
        call = self._call("UpdateItem", params)
        response = self.client.update_item(**params)
        self._wrote(params["TableName"], params["Key"], call.thread)
        self.faults.after(call)
        return response

    def batch_write_item(self, RequestItems: Mapping[str, Any]) -> dict[str, Any]:
        call = self._call("BatchWriteItem", {"RequestItems": RequestItems})
        requested = [(t, r) for t, requests in RequestItems.items() for r in requests]
        send, kept = _split(requested, self.faults.unprocessed(call, len(requested)))
        response: dict[str, Any] = {}
        if send:
            response = self.client.batch_write_item(RequestItems=send)
        unprocessed = {t: list(rs) for t, rs in (response.get("UnprocessedItems") or {}).items()}
        for table, requests in send.items():
            for request in requests:
                if "PutRequest" in request and request not in unprocessed.get(table, []):
                    self._wrote(table, request["PutRequest"]["Item"], call.thread)
        for table, requests in kept.items():
            unprocessed.setdefault(table, []).extend(requests)
        self.faults.after(call)
        return {"UnprocessedItems": unprocessed}

    def get(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.client.get_item(TableName=table, Key=dict(key), ConsistentRead=True).get("Item")

    def writer_of(self, table: str, key: Mapping[str, Any]) -> str | None:
        with self.lock:
            return self.first_writer.get((table, self.schemas[table].key_of(key)))


class FaultySns(_Fake):
    """A real SNS client (moto) behind the fakes' fault hooks; what it accepted is kept per
    topic, in order, with the thread that published it."""

    service = "sns"

    def __init__(self, client: Any, topic_arns: Iterable[str], faults: Faults) -> None:
        super().__init__(faults)
        self.client = client
        self.deliveries: dict[str, list[Delivery]] = {arn: [] for arn in topic_arns}

    def publish_batch(
        self, TopicArn: str, PublishBatchRequestEntries: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        entries = PublishBatchRequestEntries
        call = self._call(
            "PublishBatch", {"TopicArn": TopicArn, "PublishBatchRequestEntries": entries}
        )
        failing = self.faults.failed_entries(call)
        send = [e for e in entries if e["Id"] not in failing]
        response: dict[str, Any] = {"Successful": [], "Failed": []}
        if send:
            response = self.client.publish_batch(TopicArn=TopicArn, PublishBatchRequestEntries=send)
        accepted = {s["Id"] for s in response.get("Successful", [])}
        with self.lock:
            for entry in send:
                if entry["Id"] in accepted:
                    self.deliveries[TopicArn].append(
                        Delivery(
                            topic_arn=TopicArn,
                            body=entry["Message"],
                            attributes=copy.deepcopy(dict(entry.get("MessageAttributes", {}))),
                            group_id=entry.get("MessageGroupId"),
                            dedup_id=entry.get("MessageDeduplicationId"),
                            thread=call.thread,
                        )
                    )
        failed = [*response.get("Failed", [])]
        failed += [{"Id": i, "Code": code, "SenderFault": False} for i, code in failing.items()]
        self.faults.after(call)
        return {"Successful": response.get("Successful", []), "Failed": failed}

    def messages(self, topic_arn: str) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries[topic_arn])


def fault_hook(
    client: Any,
    operation: str,
    respond: Callable[[dict[str, Any]], dict[str, Any] | BaseException | None],
) -> Callable[[], None]:
    """Answer some calls of a real botocore client without sending them (as Stubber does).

    `respond(api_params)` returns a parsed response to short-circuit the call, an exception to
    raise, or None to send the call to the endpoint as usual. Returns a function that removes
    the hook.
    """
    service = client.meta.service_model.service_id.hyphenize()
    build_event = f"before-parameter-build.{service}.{operation}"
    call_event = f"before-call.{service}.{operation}"

    def remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["fault_hook_params"] = copy.deepcopy(params)

    def answer(context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict] | None:
        reply = respond(context.get("fault_hook_params", {}))
        if reply is None:
            return None
        if isinstance(reply, BaseException):
            raise reply
        status = reply.get("ResponseMetadata", {}).get("HTTPStatusCode", 200)
        return AWSResponse(None, status, {}, None), reply  # type: ignore[arg-type]

    client.meta.events.register(build_event, remember)
    client.meta.events.register(call_event, answer)

    def remove() -> None:
        client.meta.events.unregister(build_event, remember)
        client.meta.events.unregister(call_event, answer)

    return remove

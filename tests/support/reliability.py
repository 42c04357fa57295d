"""Reliability suite: the ingest pipeline under faults, against the real moto server.

Shared machinery of the suite's modules:

- `provisioned_stage`: one provisioned stage for a whole test module (provisioning takes
  about a second on a busy moto server); tests keep apart by using interactions of their own.
- `Stage` (`opened(runtime)` for a test): a test's view of that stage, with one SQS subscriber
  queue per consumer topic (raw message delivery, so a body is the delivered message) and one
  on the quarantine topic, subscribed for the test and removed after it.
- `FaultyClient`: a real boto3 client whose calls first ask a `tests.support.fakes.Faults` object
  (the same fault model the in-memory fakes use). It injects only what moto cannot produce:
  throttling and 5xx after the SDK's own retries, single PublishBatch entries failing,
  BatchGetItem/BatchWriteItem work left unprocessed, a process dying between two calls.
  The calls it lets through go to moto unchanged.
- `EventSourceMapping`: Lambda's SQS event source mapping one batch at a time on the test's
  thread, handing each batch to `scripts.local.runner.SqsPoller.invoke` (so batchItemFailures,
  "a raised exception fails the whole batch" and the timeout rule are the local runner's).
- `check_deliveries`: what every consumer must have got, per the relay's guarantees.

moto keeps a standard queue's messages in the order they were sent, and SNS delivers a
PublishBatch's entries to a subscribed queue in order: the order a subscriber queue holds is
the order the relay published (in AWS only a FIFO topic and queue would keep it).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from chalicelib.config import load_settings
from chalicelib.runtime import Runtime, get_runtime, reset_runtime
from chalicelib.stack import stack_spec
from scripts.local.runner import SqsPoller
from scripts.provisioning.infra import Clients, provision_infrastructure
from tests.support.environment import ACCOUNT_ID, REGION
from tests.support.fakes import Call, Faults, SimulatedCrash
from tests.support.helpers import cxone_event, drain_queue

STAGES = ("Queued", "Offered", "Connected", "WrapUp", "Closed")

EventKey = tuple[str, str]  # (interaction id, dedup key)


# --------------------------------------------------------------------------- events


def event_key(body: Mapping[str, Any]) -> EventKey:
    """The relay's dedup key of a CXone envelope: provider id, else envelope id; per interaction."""
    detail = body["detail"]
    return (detail["interaction.id"], detail.get("eventId") or body["id"])


def message_key(message: Mapping[str, Any]) -> EventKey:
    """The same key, from a delivered message."""
    event = message["event"]
    return (message["interaction_id"], event["detail"].get("eventId") or event["id"])


def order_key(message: Mapping[str, Any]) -> tuple[Any, str]:
    if message.get("sequence") is not None:
        return (message["sequence"], message["event_id"])
    return (message["occurred_at"], message["event_id"])


def interactions(count: int, events: int) -> tuple[list[str], list[dict[str, Any]]]:
    """`count` new interactions (ids unique to the caller) of `events` events each, in order."""
    prefix = unique("int")
    ids = [f"{prefix}-{n}" for n in range(count)]
    return ids, [event for interaction in ids for event in lifecycle(interaction, events)]


def lifecycle(interaction: str, count: int, *, provider_ids: bool = False) -> list[dict[str, Any]]:
    """`count` events of one interaction, sequences 1..count, in order."""
    return [
        cxone_event(
            interaction,
            STAGES[(n - 1) % len(STAGES)],
            n,
            provider_event_id=f"{interaction}-evt-{n}" if provider_ids else None,
        )
        for n in range(1, count + 1)
    ]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class ConsumerRefuses(Faults):
    """SNS failing, at one consumer's topic, every entry of one interaction (say the consumer's
    topic policy or KMS key refuses what that interaction carries) until it is fixed."""

    def __init__(self, topic_arn: str, interaction: str) -> None:
        self.topic_arn, self.interaction = topic_arn, interaction
        self.fixed = False
        self.refused = 0

    def failed_entries(self, call: Call) -> dict[str, str]:
        if self.fixed or call.params["TopicArn"] != self.topic_arn:
            return {}
        failed = {
            entry["Id"]: "KMSAccessDenied"
            for entry in call.params["PublishBatchRequestEntries"]
            if json.loads(entry["Message"])["interaction_id"] == self.interaction
        }
        self.refused += len(failed)
        return failed


# --------------------------------------------------------------------------- the stage


@contextmanager
def provisioned_stage(**overrides: str) -> Iterator[Runtime]:
    """A new stage on the moto server (the `aws_endpoint` fixture must be active), its
    variables set and the process runtime (`get_runtime()`, which app.py's handlers use) built
    for it. Failed records come back at once (backoff 0) unless `overrides` say otherwise."""
    env = {
        "RELAY_APP": "relay",
        "RELAY_STAGE": "r" + uuid.uuid4().hex[:10],
        "RELAY_ACCOUNT_ID": ACCOUNT_ID,
        "AWS_REGION": REGION,
        "RELAY_BACKOFF_BASE_SECONDS": "0",
        "RELAY_BACKOFF_MAX_SECONDS": "0",
        **overrides,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = load_settings()
        session = boto3.Session(region_name=REGION)
        provision_infrastructure(Clients.from_session(session), stack_spec(settings), False)
        reset_runtime()
        try:
            yield get_runtime()
        finally:
            reset_runtime()


def queue_depth(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


@dataclass
class Stage:
    """A provisioned stage and the test's view of it (its own, un-faulted AWS clients)."""

    runtime: Runtime
    sqs: Any
    ingest_url: str
    ingest_arn: str
    dlq_url: str
    consumer_queues: dict[str, str]  # consumer -> subscriber queue URL
    quarantine_queue: str
    subscriptions: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, runtime: Runtime, *, subscribe: bool = True) -> Stage:
        session = boto3.Session(region_name=REGION)
        sqs, sns = session.client("sqs"), session.client("sns")
        names = runtime.settings.names
        ingest_url = sqs.get_queue_url(QueueName=names.ingest_queue)["QueueUrl"]
        dlq_url = sqs.get_queue_url(QueueName=names.ingest_dlq)["QueueUrl"]
        consumer_queues: dict[str, str] = {}
        quarantine_queue = ""
        subscriptions: list[str] = []
        if subscribe:
            for consumer, topic_arn in runtime.consumer_topics.items():
                consumer_queues[consumer] = subscribe_queue(sqs, sns, topic_arn, subscriptions)
            quarantine_queue = subscribe_queue(sqs, sns, runtime.quarantine_topic, subscriptions)
        return cls(
            runtime=runtime,
            sqs=sqs,
            ingest_url=ingest_url,
            ingest_arn=f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{names.ingest_queue}",
            dlq_url=dlq_url,
            consumer_queues=consumer_queues,
            quarantine_queue=quarantine_queue,
            subscriptions=subscriptions,
        )

    def close(self) -> None:
        """Remove the test's subscriber queues and anything it left on the stage's queues, so
        the next test of the module starts from an empty stage."""
        sns = boto3.client("sns", region_name=REGION)
        for subscription in self.subscriptions:
            sns.unsubscribe(SubscriptionArn=subscription)
        for url in [*self.consumer_queues.values(), self.quarantine_queue]:
            if url:
                self.sqs.delete_queue(QueueUrl=url)
        # Not PurgeQueue: SQS (and moto) allow one per queue per minute.
        for url in (self.ingest_url, self.dlq_url):
            drain_queue(self.sqs, url)

    def send(self, bodies: Iterable[str | Mapping[str, Any]]) -> None:
        """Put records on the ingest queue, as the EventBridge rule's target would."""
        texts = [body if isinstance(body, str) else json.dumps(body) for body in bodies]
        for start in range(0, len(texts), 10):
            self.sqs.send_message_batch(
                QueueUrl=self.ingest_url,
                Entries=[
                    {"Id": str(n), "MessageBody": text}
                    for n, text in enumerate(texts[start : start + 10])
                ],
            )

    def deliveries(self) -> dict[str, list[dict[str, Any]]]:
        """What each consumer's subscriber queue received since the last call, in order."""
        return {
            consumer: [json.loads(m["Body"]) for m in drain_queue(self.sqs, url)]
            for consumer, url in self.consumer_queues.items()
        }

    def quarantined(self) -> list[dict[str, Any]]:
        return [json.loads(m["Body"]) for m in drain_queue(self.sqs, self.quarantine_queue)]

    def depth(self) -> int:
        return sum(queue_depth(self.sqs, self.ingest_url))

    def dlq_depth(self) -> int:
        return sum(queue_depth(self.sqs, self.dlq_url))


@contextmanager
def opened(runtime: Runtime) -> Iterator[Stage]:
    """A test's `Stage` over a module's shared runtime: the runtime's clients are put back
    afterwards (undoing the test's fault injection) and the test's subscriber queues removed."""
    with runtime._lock:
        clients = dict(runtime._clients)
    stage = Stage.open(runtime)
    try:
        yield stage
    finally:
        with runtime._lock:
            runtime._clients.clear()
            runtime._clients.update(clients)
        stage.close()


def subscribe_queue(sqs: Any, sns: Any, topic_arn: str, subscriptions: list[str]) -> str:
    """A new queue subscribed to the topic with raw message delivery; returns its URL."""
    url = sqs.create_queue(QueueName=unique("sub"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    subscription = sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
        ReturnSubscriptionArn=True,
    )
    subscriptions.append(subscription["SubscriptionArn"])
    return url


# --------------------------------------------------------------------------- faults


class FaultyClient:
    """A real boto3 client; each call asks `faults` first (see the module docstring).

    PublishBatch entries that `faults.failed_entries` names are not sent and come back as
    `Failed` entries next to moto's answer for the others; BatchWriteItem puts and
    BatchGetItem keys that `faults.unprocessed` names are not sent and come back unprocessed.
    """

    def __init__(self, client: Any, service: str, faults: Faults) -> None:
        self._client = client
        self._service = service
        self._faults = faults
        self.meta = client.meta
        self.exceptions = client.exceptions

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        operation = self._client.meta.method_to_api_mapping.get(name)
        if operation is None:
            return attribute

        def call(**params: Any) -> Any:
            return self._call(name, operation, params)

        return call

    def _call(self, method: str, operation: str, params: dict[str, Any]) -> Any:
        call = Call(self._service, operation, params)
        self._faults.before(call)
        if operation == "PublishBatch":
            response = self._publish_batch(call, params)
        elif operation == "BatchWriteItem":
            response = self._batch_write(call, params)
        elif operation == "BatchGetItem":
            response = self._batch_get(call, params)
        else:
            response = getattr(self._client, method)(**params)
        self._faults.after(call)
        return response

    def _publish_batch(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        failing = self._faults.failed_entries(call)
        entries = params["PublishBatchRequestEntries"]
        sent = [entry for entry in entries if entry["Id"] not in failing]
        response: dict[str, Any] = {"Successful": [], "Failed": []}
        if sent:
            response = self._client.publish_batch(
                TopicArn=params["TopicArn"], PublishBatchRequestEntries=sent
            )
            response.setdefault("Failed", [])
        response["Failed"] = [
            *response["Failed"],
            *(
                {"Id": entry["Id"], "Code": failing[entry["Id"]], "SenderFault": False}
                for entry in entries
                if entry["Id"] in failing
            ),
        ]
        return response

    def _batch_write(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        writes = [
            (table, request) for table, rs in params["RequestItems"].items() for request in rs
        ]
        left = self._faults.unprocessed(call, len(writes))
        sent: dict[str, list[Any]] = defaultdict(list)
        unprocessed: dict[str, list[Any]] = defaultdict(list)
        for index, (table, request) in enumerate(writes):
            (unprocessed if index in left else sent)[table].append(request)
        if sent:
            response = self._client.batch_write_item(RequestItems=dict(sent))
            for table, requests in (response.get("UnprocessedItems") or {}).items():
                unprocessed[table] += requests
        return {"UnprocessedItems": dict(unprocessed)}

    def _batch_get(self, call: Call, params: dict[str, Any]) -> dict[str, Any]:
        request = params["RequestItems"]
        keys = [(table, key) for table, spec in request.items() for key in spec["Keys"]]
        left = self._faults.unprocessed(call, len(keys))

        def subset(wanted: Callable[[int], bool]) -> dict[str, Any]:
            chosen: dict[str, Any] = {}
            for index, (table, key) in enumerate(keys):
                if wanted(index):
                    spec = {k: v for k, v in request[table].items() if k != "Keys"}
                    chosen.setdefault(table, {**spec, "Keys": []})["Keys"].append(key)
            return chosen

        responses: dict[str, list[Any]] = {}
        unprocessed = subset(lambda index: index in left)
        sent = subset(lambda index: index not in left)
        if sent:
            response = self._client.batch_get_item(RequestItems=sent)
            responses = response.get("Responses", {})
            for table, spec in (response.get("UnprocessedKeys") or {}).items():
                unprocessed.setdefault(table, {**spec, "Keys": []})["Keys"] += spec["Keys"]
        return {"Responses": responses, "UnprocessedKeys": unprocessed}


def inject(runtime: Runtime, faults: Faults, services: Sequence[str]) -> Callable[[], None]:
    """Route the runtime's clients of `services` through `faults`; returns the undo."""
    originals = {service: runtime.client(service) for service in services}
    with runtime._lock:
        for service, client in originals.items():
            runtime._clients[service] = FaultyClient(client, service, faults)

    def restore() -> None:
        with runtime._lock:
            runtime._clients.update(originals)

    return restore


class Crash(Faults):
    """The invocation dies at the first call `at` matches: before it takes effect, or (with
    `after=True`) once it has. A dead invocation makes no further call (every later call
    raises too) until `revive()`, which is the next invocation starting."""

    def __init__(self, at: Callable[[Call], bool], *, after: bool = False, skip: int = 0) -> None:
        self.at = at
        self.after_effect = after
        self.skip = skip  # matching calls to let through before the fatal one
        self.crashed = False
        self.armed = True

    def _strikes(self, call: Call) -> bool:
        if not self.armed or not self.at(call):
            return False
        if self.skip:
            self.skip -= 1
            return False
        self.armed, self.crashed = False, True
        return True

    def before(self, call: Call) -> None:
        if self.crashed:
            raise SimulatedCrash(f"already dead at {call.operation}")
        if not self.after_effect and self._strikes(call):
            raise SimulatedCrash(f"died before {call.operation}")

    def after(self, call: Call) -> None:
        if self.after_effect and self._strikes(call):
            raise SimulatedCrash(f"died after {call.operation}")

    def revive(self) -> None:
        self.crashed = False


# --------------------------------------------------------------------------- the mapping


class InvocationDied(Exception):
    """What the event source mapping sees of an invocation that died: a failed invocation."""


@dataclass
class EventSourceMapping:
    """The ingest queue's event source mapping, one batch at a time on the calling thread."""

    stage: Stage
    handler: Callable[[dict[str, Any], Any], Any]
    timeout_seconds: float = 10.0
    batch_size: int = 10
    # Receipt handles of batches that failed as a whole (died, raised or timed out): their
    # records come back only after the queue's visibility timeout.
    failed: list[list[str]] = field(default_factory=list)
    responses: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.poller = SqsPoller(
            self.stage.sqs,
            name="ingest",
            queue_url=self.stage.ingest_url,
            queue_arn=self.stage.ingest_arn,
            region=REGION,
            handler=self._invoke,
            batch_size=self.batch_size,
            batching_window_seconds=0,
            timeout_seconds=self.timeout_seconds,
            concurrency=1,
        )

    def _invoke(self, event: dict[str, Any], context: Any) -> Any:
        try:
            response = self.handler(event, context)
        except SimulatedCrash as crash:
            raise InvocationDied(str(crash)) from None
        self.responses.append(response)
        return response

    def step(self) -> list[dict[str, Any]]:
        """One batch, if a record is visible; returns the batch's messages."""
        if queue_depth(self.stage.sqs, self.stage.ingest_url)[0] == 0:
            return []
        # One receive, as the poller's receive_batch makes it; receive_batch itself would wait
        # until a message comes, and the last one may have just gone to the DLQ instead.
        messages = self.stage.sqs.receive_message(
            QueueUrl=self.stage.ingest_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if messages:
            failed_batches = self.poller.stats.failed_batches
            self.poller.invoke(messages)
            if self.poller.stats.failed_batches > failed_batches:
                self.failed.append([m["ReceiptHandle"] for m in messages])
        return messages

    def drain(self, max_batches: int = 100) -> int:
        """Run batches until the ingest queue is empty; returns the number of batches."""
        for batch in range(max_batches):
            if self.stage.depth() == 0:
                return batch
            if not self.step():
                time.sleep(0.05)  # a record is between receive and delete elsewhere
        raise AssertionError(f"the ingest queue did not drain in {max_batches} batches")

    def visibility_timeout_passed(self) -> None:
        """Records of failed batches come back, as after the queue's visibility timeout."""
        for handles in self.failed:
            self.stage.sqs.change_message_visibility_batch(
                QueueUrl=self.stage.ingest_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                    for n, handle in enumerate(handles)
                ],
            )
        self.failed.clear()


# How long a run of pollers may take before it counts as hung. Not a speed target: on a loaded
# machine a queue drains slowly, but it drains.
HANG_GUARD_SECONDS = 600


def stage_poller(
    stage: Stage,
    handler: Callable[[dict[str, Any], Any], Any],
    name: str,
    *,
    concurrency: int,
    batching_window_seconds: float = 0,
) -> SqsPoller:
    """A local event source mapping on the stage's ingest queue: batches of 10, a 10 s
    invocation timeout (shorter than the stage's ingest timeout, as these tests always ran),
    `concurrency` batches in flight."""
    return SqsPoller(
        stage.sqs,
        name=name,
        queue_url=stage.ingest_url,
        queue_arn=stage.ingest_arn,
        region=REGION,
        handler=handler,
        batch_size=10,
        batching_window_seconds=batching_window_seconds,
        timeout_seconds=10,
        concurrency=concurrency,
    )


def run_until_drained(pollers: Sequence[SqsPoller], pending: Callable[[], int]) -> float:
    """Start the pollers, wait until `pending()` is 0, stop them; returns the seconds it took.
    Fails only on a hung run (HANG_GUARD_SECONDS)."""
    started = time.monotonic()
    for poller in pollers:
        poller.start()
    try:
        while pending():
            if time.monotonic() - started > HANG_GUARD_SECONDS:
                raise AssertionError(f"the queue did not drain in {HANG_GUARD_SECONDS} s: hung")
            time.sleep(0.25)
    finally:
        for poller in pollers:
            poller.stop()
    return time.monotonic() - started


# --------------------------------------------------------------------------- the checks


def check_deliveries(
    deliveries: Mapping[str, Sequence[Mapping[str, Any]]],
    expected: Collection[EventKey],
    *,
    may_repeat: Collection[EventKey] = (),
    consumers: Collection[str] | None = None,
) -> None:
    """the relay's guarantees, as every consumer's subscriber queue shows them.

    1. nothing lost: every expected event reached every consumer, and nothing else did;
    2. once: no event twice, except those in `may_repeat` (published before a crash that came
       before their publish was recorded), which may come twice;
    3. in order per interaction: the events not flagged `late` arrived in order-key order
       (a repeat after a crash counts where its first copy arrived);
    4. `late` is one value per event, the same for every consumer and every copy.
    """
    expected = set(expected)
    if consumers is not None:
        assert set(deliveries) == set(consumers)
    late_of: dict[EventKey, bool] = {}
    for consumer, messages in deliveries.items():
        counts = Counter(message_key(m) for m in messages)
        missing, unexpected = expected - set(counts), set(counts) - expected
        assert not missing, f"{consumer} never got {sorted(missing)}"
        assert not unexpected, f"{consumer} got events nobody sent: {sorted(unexpected)}"
        twice = {k: c for k, c in counts.items() if c > (2 if k in may_repeat else 1)}
        assert not twice, f"{consumer} got events more often than allowed: {twice}"
        first: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
        seen: set[EventKey] = set()
        for message in messages:
            key = message_key(message)
            assert late_of.setdefault(key, message["late"]) is message["late"], key
            if key not in seen:
                seen.add(key)
                first[key[0]].append(message)
        for interaction, arrived in first.items():
            timely = [order_key(m) for m in arrived if not m["late"]]
            assert timely == sorted(timely), f"{consumer}, {interaction} out of order: {timely}"


def repeated(deliveries: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, int]:
    """Per consumer, how many deliveries were repeats of an event it already had."""
    return {
        consumer: len(messages) - len({message_key(m) for m in messages})
        for consumer, messages in deliveries.items()
    }

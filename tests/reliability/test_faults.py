"""Each dependency failing in turn, against the real moto server: nothing lost, nothing doubled.

Every fault here is one moto cannot produce, injected with `FaultyClient` (or, for the SDK
retry, at the HTTP layer); each test says what it simulates. The relay runs as deployed: the
real `ingest` handler of app.py, fed by the local event source mapping (SqsPoller) from the
stage's real ingest queue, publishing to the real topics; consumers are SQS subscriber queues.

What every test asserts, in the end, through `check_deliveries`: once the fault clears and the
failed records are retried, every valid event reached every consumer, in order per interaction,
and no consumer got one twice unless the invocation died between publishing it and recording
that publish. On the way: failed records are reported as batchItemFailures (never acknowledged).

The module's stage retries with a backoff of 0, so a failed record is visible again at once; a
dead invocation's records are made visible by the test (`visibility_timeout_passed`), and its
leases expire by moving the pipeline's clock forward (`Clock`), not by sleeping.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError
from chalice.test import Client

from chalicelib.ingest import batch as pipeline
from chalicelib.ingest.ledger import CLAIM_ATTEMPTS
from chalicelib.push.handler import SIGNING_SECRETS
from chalicelib.push.signing import signed_headers
from chalicelib.runtime import Runtime
from chalicelib.telemetry import TALLY
from scripts.local.cxone_standin import CXoneStandIn
from scripts.local.runner import LocalContext, scheduled_event
from tests.support.fakes import (
    Call,
    Faults,
    InlineExecutor,
    Rule,
    ScriptedFaults,
    client_error,
    internal_error,
)
from tests.support.reliability import (
    Crash,
    EventKey,
    EventSourceMapping,
    Stage,
    check_deliveries,
    event_key,
    inject,
    interactions,
    repeated,
)

INVALID_BODY = "this is not an event"


class Clock:
    """The pipeline's clock (`chalicelib.ingest.batch.utc_now`), moved forward by the test."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(pipeline, "utc_now", clock.now)
    return clock


@pytest.fixture
def mapping(stage: Stage, ingest: Callable[[dict[str, Any], Any], Any]) -> EventSourceMapping:
    return EventSourceMapping(stage, ingest)


def keys_of(events: list[dict[str, Any]]) -> set[EventKey]:
    return {event_key(event) for event in events}


def failed_ids(response: dict[str, Any]) -> set[str]:
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}


def message_ids_by_interaction(messages: list[dict[str, Any]]) -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = {}
    for message in messages:
        try:
            interaction = json.loads(message["Body"])["detail"]["interaction.id"]
        except (ValueError, KeyError):
            interaction = "(invalid)"
        grouped.setdefault(interaction, set()).add(message["MessageId"])
    return grouped


def topic_is(runtime: Runtime, consumer: str) -> Callable[[Call], bool]:
    arn = runtime.consumer_topics[consumer]
    return lambda call: call.params.get("TopicArn") == arn


# --------------------------------------------------------------------------- SNS


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(lambda: internal_error("PublishBatch"), id="500"),
        pytest.param(lambda: client_error("Throttling", "PublishBatch", "Rate exceeded"), id="429"),
    ],
)
def test_a_failed_publish_batch_fails_its_records_and_the_retry_reaches_only_that_consumer(
    stage: Stage, mapping: EventSourceMapping, error: Callable[[], Exception]
) -> None:
    """Simulates SNS answering one consumer's PublishBatch with a 500 or throttling after the
    SDK's retries gave up."""
    runtime = stage.runtime
    _, events = interactions(2, 3)
    faults = ScriptedFaults(
        Rule("sns", "PublishBatch", when=topic_is(runtime, "crm-updater"), error=error())
    )
    inject(runtime, faults, ["sns"])
    stage.send(events)

    batch = mapping.step()

    # Not acknowledged: every record is a batch item failure, since crm-updater lacks each.
    assert failed_ids(mapping.responses[-1]) == {m["MessageId"] for m in batch}
    first = stage.deliveries()
    assert first["crm-updater"] == []
    assert all(len(first[c]) == 6 for c in ("analytics-sink", "agent-dashboard"))

    mapping.drain()
    second = stage.deliveries()
    # The retry publishes to the consumer that missed the events, and to nobody else.
    assert second["analytics-sink"] == second["agent-dashboard"] == []
    check_deliveries(
        {c: first[c] + second[c] for c in first}, keys_of(events), consumers=first.keys()
    )


class FailEntriesOf(Faults):
    """Single PublishBatch entries failing: those of `interactions`, at `topic_arn` only."""

    def __init__(self, topic_arn: str, interactions: set[str]) -> None:
        self.topic_arn, self.interactions = topic_arn, interactions
        self.enabled = True

    def failed_entries(self, call: Call) -> dict[str, str]:
        if not self.enabled or call.params["TopicArn"] != self.topic_arn:
            return {}
        return {
            entry["Id"]: "InternalError"
            for entry in call.params["PublishBatchRequestEntries"]
            if json.loads(entry["Message"])["interaction_id"] in self.interactions
        }


def test_failed_entries_fail_only_their_records_and_reach_their_consumer_on_retry(
    stage: Stage, mapping: EventSourceMapping
) -> None:
    """Simulates SNS failing single entries of a PublishBatch that it otherwise accepts: every
    entry of one interaction. (A lone failed entry followed by accepted later entries of its
    interaction breaks the order: the strict xfail
    tests/unit/test_pipeline_properties.py::test_a_lone_failed_entry_is_not_overtaken_by_a_later_event_of_its_interaction.)"""
    runtime = stage.runtime
    (healthy, failing), events = interactions(2, 4)  # they share every PublishBatch request
    faults = FailEntriesOf(runtime.consumer_topics["agent-dashboard"], {failing})
    inject(runtime, faults, ["sns"])
    stage.send(events)

    batch = mapping.step()
    faults.enabled = False

    by_interaction = message_ids_by_interaction(batch)
    assert failed_ids(mapping.responses[-1]) == by_interaction[failing]
    assert healthy in by_interaction
    mapping.drain()
    deliveries = stage.deliveries()
    check_deliveries(deliveries, keys_of(events), consumers=runtime.settings.consumers)
    assert repeated(deliveries) == dict.fromkeys(runtime.settings.consumers, 0)


def test_a_transient_sns_500_is_absorbed_by_the_sdk_retry(
    stage: Stage, mapping: EventSourceMapping
) -> None:
    """Simulates one HTTP 500 from SNS at the wire (botocore's before-send): the runtime's
    standard retry mode sends the request again, and nothing reaches the batch's outcome."""
    runtime = stage.runtime
    sns = runtime.sns
    failures = {"left": 1}
    error_body = (
        b"<ErrorResponse><Error><Type>Receiver</Type><Code>InternalError</Code>"
        b"<Message>injected</Message></Error><RequestId>r</RequestId></ErrorResponse>"
    )

    def fail_once(request: Any, **_: Any) -> AWSResponse | None:
        body = request.body or b""
        body = body if isinstance(body, bytes) else str(body).encode()
        if failures["left"] and b"Action=PublishBatch" in body:
            failures["left"] -= 1
            return AWSResponse(request.url, 500, {}, _RawBody(error_body))
        return None

    sns.meta.events.register("before-send.sns", fail_once)
    _, events = interactions(1, 3)
    stage.send(events)
    try:
        mapping.drain()
    finally:
        sns.meta.events.unregister("before-send.sns", fail_once)

    assert failures["left"] == 0
    assert all(failed_ids(response) == set() for response in mapping.responses)
    check_deliveries(stage.deliveries(), keys_of(events))


class _RawBody:
    """The raw stream botocore reads an HTTP response body from."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content

    def read(self, *_: Any) -> bytes:
        content, self._content = self._content, b""
        return content


# --------------------------------------------------------------------------- DynamoDB


def throttled(operation: str) -> Exception:
    return client_error(
        "ProvisionedThroughputExceededException", operation, "The level of configured..."
    )


def test_a_throttled_ledger_read_fails_the_valid_records_but_still_quarantines(
    stage: Stage, mapping: EventSourceMapping
) -> None:
    """Simulates BatchGetItem throttled past the SDK's retries."""
    runtime = stage.runtime
    names, events = interactions(2, 2)
    inject(
        runtime,
        ScriptedFaults(Rule("dynamodb", "BatchGetItem", error=throttled("Get"))),
        ["dynamodb"],
    )
    stage.send([*events, INVALID_BODY])

    batch = mapping.step()

    by_interaction = message_ids_by_interaction(batch)
    assert failed_ids(mapping.responses[-1]) == by_interaction[names[0]] | by_interaction[names[1]]
    assert all(messages == [] for messages in stage.deliveries().values())
    assert [q["raw"] for q in stage.quarantined()] == [INVALID_BODY]  # acknowledged at once

    mapping.drain()
    check_deliveries(stage.deliveries(), keys_of(events))
    assert stage.quarantined() == []  # not quarantined twice


class LeaveUnprocessedOnce(Faults):
    """BatchGetItem and BatchWriteItem each leave half their work unprocessed, once."""

    def __init__(self) -> None:
        self.left = {"BatchGetItem": 1, "BatchWriteItem": 1}

    def unprocessed(self, call: Call, count: int) -> set[int]:
        if self.left.get(call.operation):
            self.left[call.operation] -= 1
            return set(range(0, count, 2))
        return set()


def test_unprocessed_keys_and_items_are_finished_within_the_invocation(
    stage: Stage, mapping: EventSourceMapping
) -> None:
    """Simulates DynamoDB's batch throttling: part of a BatchGetItem / BatchWriteItem returned
    unprocessed (moto always processes everything)."""
    faults = LeaveUnprocessedOnce()
    inject(stage.runtime, faults, ["dynamodb"])
    _, events = interactions(3, 3)
    stage.send(events)

    mapping.drain()

    assert faults.left == {"BatchGetItem": 0, "BatchWriteItem": 0}
    assert all(failed_ids(response) == set() for response in mapping.responses)
    check_deliveries(stage.deliveries(), keys_of(events))


def test_a_throttled_claim_fails_only_its_interaction(
    stage: Stage, mapping: EventSourceMapping
) -> None:
    """Simulates PutItem (the claim of one interaction) throttled past the SDK's retries and
    the ledger's own second try."""
    runtime = stage.runtime
    (healthy, throttled_one), events = interactions(2, 3)

    def claims_it(call: Call) -> bool:
        return call.params["Item"]["pk"]["S"] == throttled_one

    throttle = Rule(
        "dynamodb", "PutItem", claims_it, times=CLAIM_ATTEMPTS, error=throttled("PutItem")
    )
    faults = ScriptedFaults(throttle)
    inject(runtime, faults, ["dynamodb"])
    stage.send(events)

    batch = mapping.step()

    assert failed_ids(mapping.responses[-1]) == message_ids_by_interaction(batch)[throttled_one]
    first = stage.deliveries()
    assert all({m["interaction_id"] for m in messages} == {healthy} for messages in first.values())
    mapping.drain()
    second = stage.deliveries()
    check_deliveries({c: first[c] + second[c] for c in first}, keys_of(events))


def test_a_claim_whose_answer_was_lost_is_recognised_as_ours(
    stage: Stage, mapping: EventSourceMapping
) -> None:
    """Simulates the claim's PutItem landing and its answer being lost (a 500 after the write
    took effect, past the SDK's retries). The ledger's second try is refused, but the record
    it gets back carries this invocation's own lease and version: the claim is ours, so the
    events go out now instead of waiting for the lease to expire."""
    runtime = stage.runtime
    _, events = interactions(1, 3)
    lost = Rule("dynamodb", "PutItem", error_after=internal_error("PutItem"))
    inject(runtime, ScriptedFaults(lost), ["dynamodb"])
    stage.send(events)

    mapping.step()

    assert lost.times == 0  # the fault struck
    assert failed_ids(mapping.responses[-1]) == set()
    check_deliveries(stage.deliveries(), keys_of(events))


def test_a_settle_throttled_once_is_retried_by_the_ledger(
    stage: Stage, mapping: EventSourceMapping
) -> None:
    """Simulates BatchWriteItem (store + release) throttled once past the SDK's retries."""
    faults = ScriptedFaults(Rule("dynamodb", "BatchWriteItem", error=throttled("BatchWriteItem")))
    inject(stage.runtime, faults, ["dynamodb"])
    _, events = interactions(2, 3)
    stage.send(events)

    mapping.drain()

    assert all(failed_ids(response) == set() for response in mapping.responses)
    deliveries = stage.deliveries()
    check_deliveries(deliveries, keys_of(events))
    assert sum(repeated(deliveries).values()) == 0


def test_a_settle_failing_for_good_retries_everything_after_the_lease(
    stage: Stage, mapping: EventSourceMapping, clock: Clock
) -> None:
    """Simulates DynamoDB refusing every BatchWriteItem attempt of one invocation (the ledger's
    own six): its publishes went out but were never recorded, the one window besides a crash
    where a consumer may get an event twice."""
    from chalicelib.aws import BATCH_ATTEMPTS

    runtime = stage.runtime
    faults = ScriptedFaults(
        Rule("dynamodb", "BatchWriteItem", times=BATCH_ATTEMPTS, error=throttled("BatchWriteItem"))
    )
    inject(runtime, faults, ["dynamodb"])
    _, events = interactions(2, 3)
    stage.send(events)

    batch = mapping.step()
    assert failed_ids(mapping.responses[-1]) == {m["MessageId"] for m in batch}

    # The lease the failed invocation could not release still holds its interactions: an
    # immediate retry waits, and publishes nothing out of turn.
    mapping.step()
    assert failed_ids(mapping.responses[-1]) == {m["MessageId"] for m in batch}
    clock.advance(runtime.settings.lease_seconds + 1)
    mapping.drain()

    deliveries = stage.deliveries()
    check_deliveries(deliveries, keys_of(events), may_repeat=keys_of(events))
    # Stored now: the same events sent again are acknowledged as duplicates, not published.
    stage.send(events)
    mapping.drain()
    assert all(messages == [] for messages in stage.deliveries().values())
    assert all(failed_ids(response) == set() for response in mapping.responses[-1:])


# --------------------------------------------------------------------------- a crash anywhere


def dynamodb_call(operation: str) -> Callable[[Call], bool]:
    return lambda call: call.service == "dynamodb" and call.operation == operation


def consumer_publish(runtime: Runtime) -> Callable[[Call], bool]:
    quarantine = runtime.quarantine_topic
    return lambda call: call.operation == "PublishBatch" and call.params["TopicArn"] != quarantine


# boundary -> (where the invocation dies, whether its publishes may repeat on the retry)
BOUNDARIES: dict[str, tuple[Callable[[Runtime], Crash], bool]] = {
    "after_validate": (lambda rt: Crash(dynamodb_call("BatchGetItem")), False),
    "after_ledger_read": (lambda rt: Crash(dynamodb_call("PutItem")), False),
    "after_some_claims": (lambda rt: Crash(dynamodb_call("PutItem"), skip=1), False),
    "after_claim": (lambda rt: Crash(consumer_publish(rt)), False),
    "after_publish_to_some_consumers": (lambda rt: Crash(consumer_publish(rt), skip=1), True),
    "after_publish": (lambda rt: Crash(dynamodb_call("BatchWriteItem")), True),
    # The settle writes time-index entries first, then the event items (their dedup records).
    "after_index_entries": (
        lambda rt: Crash(dynamodb_call("BatchWriteItem"), after=True),
        True,
    ),
    "after_settle": (
        lambda rt: Crash(dynamodb_call("BatchWriteItem"), after=True, skip=1),
        False,
    ),
}


@pytest.mark.parametrize("boundary", list(BOUNDARIES))
def test_a_crash_between_any_two_steps_loses_nothing(
    boundary: str,
    stage: Stage,
    mapping: EventSourceMapping,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Simulates the process dying (timeout, out of memory) at a step boundary: the call there
    and every later one of that invocation never happen; the event source mapping sees a failed
    invocation. Steps run one after another (an inline executor), so the boundary is exact."""
    runtime = stage.runtime
    monkeypatch.setattr(runtime, "executor", InlineExecutor())
    make_crash, may_repeat = BOUNDARIES[boundary]
    crash = make_crash(runtime)
    inject(runtime, crash, ["dynamodb", "sns", "sqs"])
    _, events = interactions(3, 3)  # with the invalid record: one batch of ten
    stage.send([*events, INVALID_BODY])

    batch = mapping.step()

    assert len(batch) == 10 and crash.crashed
    assert mapping.poller.stats.as_dict()["deleted"] == 0  # nothing acknowledged
    assert stage.depth() == 10
    before_retry = stage.deliveries()

    crash.revive()
    mapping.visibility_timeout_passed()
    clock.advance(runtime.settings.lease_seconds + 1)  # the dead invocation's leases expire
    mapping.drain()

    after_retry = stage.deliveries()
    deliveries = {c: before_retry[c] + after_retry[c] for c in before_retry}
    keys = keys_of(events)
    check_deliveries(deliveries, keys, may_repeat=keys if may_repeat else ())
    published_before = {c for c, messages in before_retry.items() if messages}
    # Repeats are exactly the publishes the dead invocation made and could not record.
    assert {c for c, n in repeated(deliveries).items() if n} == (
        published_before if may_repeat else set()
    )
    if boundary == "after_settle":
        assert all(messages == [] for messages in after_retry.values())  # duplicates only
    assert {q["raw"] for q in stage.quarantined()} == {INVALID_BODY}
    assert stage.dlq_depth() == 0


# --------------------------------------------------------------------------- Lambda timeouts


def test_a_batch_started_with_too_little_time_is_delivered_by_the_next_invocation(
    stage: Stage, ingest: Callable[[dict[str, Any], Any], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Lambda context with less time left than the deadline margin, as the local runner
    makes it: the invocation starts no delivery, still quarantines what is invalid, and
    reports the rest as failures; the next invocation delivers them at once (no lease to wait
    for). That no claim is written is tests/integration/test_pipeline.py's
    test_with_too_little_time_left_nothing_is_claimed_and_every_record_fails.

    The margin is raised above the invocation's 10 s rather than the timeout cut below the
    margin: on a loaded machine, even the quarantine publish can outlast a timeout that short,
    and the runner would then count the invocation as killed (nothing deleted)."""
    runtime = stage.runtime
    hurried = EventSourceMapping(stage, ingest)
    _, events = interactions(2, 2)
    stage.send([*events, INVALID_BODY])

    with monkeypatch.context() as patch:
        patch.setattr(runtime, "settings", replace(runtime.settings, deadline_margin_ms=60_000))
        batch = hurried.step()

    valid = {m["MessageId"] for m in batch if m["Body"] != INVALID_BODY}
    assert failed_ids(hurried.responses[-1]) == valid
    assert all(messages == [] for messages in stage.deliveries().values())
    assert len(stage.quarantined()) == 1
    # No lease was taken: a retry with time to spare delivers at once, in one batch.
    relaxed = EventSourceMapping(stage, ingest)
    assert relaxed.drain() == 1
    check_deliveries(stage.deliveries(), keys_of(events))


class SlowPublish(Faults):
    """Every consumer PublishBatch takes `seconds` (a slow SNS)."""

    def __init__(self, quarantine_arn: str, seconds: float) -> None:
        self.quarantine_arn, self.seconds = quarantine_arn, seconds

    def before(self, call: Call) -> None:
        if call.operation == "PublishBatch" and call.params["TopicArn"] != self.quarantine_arn:
            time.sleep(self.seconds)


def test_an_invocation_over_its_timeout_is_a_failed_batch_and_its_retry_sends_nothing_twice(
    stage: Stage, ingest: Callable[[dict[str, Any], Any], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Simulates SNS slowing down past the function's timeout. The local runner, like Lambda,
    counts an invocation over its timeout as a failed batch and deletes nothing; here the
    handler still finished its work, so the records come back already delivered."""
    runtime = stage.runtime
    monkeypatch.setattr(runtime, "settings", replace(runtime.settings, deadline_margin_ms=100))
    # Publishing alone outlasts the timeout, and everything before it (validation, ledger
    # read, claims) has seconds to spare before the deadline check, even on a loaded machine.
    restore = inject(runtime, SlowPublish(runtime.quarantine_topic, 5.5), ["sns"])
    timed = EventSourceMapping(stage, ingest, timeout_seconds=5.0)
    _, events = interactions(2, 2)
    stage.send(events)

    timed.step()
    restore()

    stats = timed.poller.stats.as_dict()
    assert stats["failed_batches"] == 1 and stats["deleted"] == 0
    timed.visibility_timeout_passed()
    timed.drain()
    assert timed.poller.stats.as_dict()["deleted"] == len(events)
    deliveries = stage.deliveries()
    check_deliveries(deliveries, keys_of(events))  # each once: the retry found them stored
    assert sum(repeated(deliveries).values()) == 0


# --------------------------------------------------------------------------- Secrets Manager


class SecretsManagerDown(Faults):
    """Secrets Manager refusing `operations` (every one when None) on `secret` (any when
    empty), as during an outage: `error(operation)` is what the caller gets."""

    def __init__(
        self,
        error: Callable[[str], Exception],
        operations: set[str] | None = None,
        secret: str = "",
    ) -> None:
        self.error, self.operations, self.secret = error, operations, secret

    def before(self, call: Call) -> None:
        if self.operations is not None and call.operation not in self.operations:
            return
        named = {call.params.get("SecretId"), call.params.get("Name")}
        if self.secret and self.secret not in named:
            return
        raise self.error(call.operation)


def unavailable(operation: str) -> Exception:
    return client_error("InternalServiceError", operation, "Secrets Manager is unavailable")


def unreachable(operation: str) -> Exception:
    return EndpointConnectionError(endpoint_url="https://secretsmanager.us-east-1.amazonaws.com")


def put_secret(runtime: Runtime, name: str, value: str) -> None:
    """Create the secret, or give it a new value (the module's tests share one stage)."""
    client = runtime.secretsmanager
    try:
        client.create_secret(Name=name, SecretString=value)
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=value)


@dataclass(frozen=True)
class CXone:
    stand_in: CXoneStandIn
    client_secret: str


@pytest.fixture
def cxone(shared_runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[CXone]:
    """A CXone stand-in issuing hour-long tokens; the relay refreshes whenever it runs (a
    refresh margin of an hour), so every run needs Secrets Manager."""
    client_secret = "cs-" + secrets.token_hex(16)
    with CXoneStandIn("relay-client", client_secret, token_ttl_seconds=3600) as stand_in:
        monkeypatch.setenv("CXONE_AUTH_BASE_URL", stand_in.base_url)
        monkeypatch.setenv("CXONE_REFRESH_MARGIN_SECONDS", "3600")
        monkeypatch.setenv("CXONE_MAX_RETRIES", "0")
        yield CXone(stand_in, client_secret)


def refresh_token_handler() -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    import app as app_module

    return app_module.app.handler_map["refresh_token"]


def run_refresh() -> dict[str, Any]:
    handler = refresh_token_handler()
    return handler(scheduled_event("refresh_token", "us-east-1"), LocalContext("refresh", 30))


def stored_token(stage: Stage) -> dict[str, Any]:
    import boto3

    client = boto3.client("secretsmanager", region_name="us-east-1")
    name = stage.runtime.settings.names.token_secret
    return json.loads(client.get_secret_value(SecretId=name)["SecretString"])


@pytest.fixture
def token_stage(stage: Stage, cxone: CXone) -> Stage:
    credentials = {"client_id": "relay-client", "client_secret": cxone.client_secret}
    names = stage.runtime.settings.names
    put_secret(stage.runtime, names.credentials_secret, json.dumps(credentials))
    assert run_refresh()["refresh_status"] == "refreshed"
    return stage


@pytest.mark.parametrize(
    ("operations", "which"),
    [
        pytest.param({"PutSecretValue", "CreateSecret"}, "token", id="storing-the-new-token"),
        pytest.param({"GetSecretValue"}, "credentials", id="reading-the-credentials"),
    ],
)
def test_token_refresh_keeps_the_valid_token_when_secrets_manager_fails(
    token_stage: Stage,
    operations: set[str],
    which: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Simulates Secrets Manager failing part of a refresh (a 5xx past the SDK's retries)."""
    runtime = token_stage.runtime
    names = runtime.settings.names
    secret = names.token_secret if which == "token" else names.credentials_secret
    kept = stored_token(token_stage)
    failed_before = TALLY.snapshot().get("TokenRefreshFailed", 0)
    inject(runtime, SecretsManagerDown(unavailable, operations, secret), ["secretsmanager"])

    outcome = run_refresh()  # does not raise: a valid token remains

    assert outcome["refresh_status"] == "failed_kept_valid"
    assert outcome["token_expires_at"] == kept["expires_at"]
    assert stored_token(token_stage) == kept
    assert TALLY.snapshot().get("TokenRefreshFailed", 0) == failed_before + 1
    errors = [r for r in caplog.records if r.getMessage() == "CXone token refresh failed"]
    assert errors and errors[-1].levelname == "ERROR"


def test_token_refresh_survives_secrets_manager_being_down(
    token_stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    """Simulates a Secrets Manager outage: every call fails, the token secret cannot even be
    read. The stored token is left as it is; the run says so, counts and logs, and does not
    crash (a crash would be retried by EventBridge into the same outage)."""
    runtime = token_stage.runtime
    kept = stored_token(token_stage)
    failed_before = TALLY.snapshot().get("TokenRefreshFailed", 0)
    inject(runtime, SecretsManagerDown(unavailable), ["secretsmanager"])

    outcome = run_refresh()

    assert outcome["refresh_status"] == "failed_unknown"
    assert "token secret" in outcome["error_message"]
    assert TALLY.snapshot().get("TokenRefreshFailed", 0) == failed_before + 1
    assert any(r.getMessage() == "CXone token refresh failed" for r in caplog.records)
    assert stored_token(token_stage) == kept


@pytest.fixture
def push_client(stage: Stage) -> Iterator[Client]:
    import app as app_module

    put_secret(stage.runtime, stage.runtime.settings.names.push_secret, secrets.token_hex(32))
    SIGNING_SECRETS.clear()
    with Client(app_module.app, stage_name="local") as client:
        yield client
    SIGNING_SECRETS.clear()


def push_secret(stage: Stage) -> str:
    import boto3

    client = boto3.client("secretsmanager", region_name="us-east-1")
    name = stage.runtime.settings.names.push_secret
    return client.get_secret_value(SecretId=name)["SecretString"]


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(unavailable, id="5xx"),
        pytest.param(unreachable, id="network"),
    ],
)
def test_post_events_is_503_while_the_signing_secret_cannot_be_read(
    stage: Stage, push_client: Client, error: Callable[[str], Exception]
) -> None:
    """Simulates Secrets Manager unreachable when POST /events needs the signing secret."""
    secret = push_secret(stage)
    inject(stage.runtime, SecretsManagerDown(error), ["secretsmanager"])
    body = json.dumps({"events": interactions(1, 1)[1]}).encode()

    response = push_client.http.post("/events", headers=signed_headers(secret, body), body=body)

    assert response.status_code == 503
    assert json.loads(response.body)["Code"] == "ServiceUnavailable"
    assert "retry" in json.loads(response.body)["Message"]
    assert secret not in response.body.decode()
    assert stage.depth() == 0  # nothing was put on the bus


def test_post_events_keeps_accepting_with_the_cached_secret_while_secrets_manager_is_down(
    stage: Stage, push_client: Client
) -> None:
    """Simulates a Secrets Manager outage starting after the secret was read once."""
    secret = push_secret(stage)
    first = json.dumps({"events": interactions(1, 1)[1]}).encode()
    accepted = push_client.http.post("/events", headers=signed_headers(secret, first), body=first)
    assert accepted.status_code == 200
    inject(stage.runtime, SecretsManagerDown(unavailable), ["secretsmanager"])
    body = json.dumps({"events": interactions(1, 1)[1]}).encode()

    response = push_client.http.post("/events", headers=signed_headers(secret, body), body=body)

    assert response.status_code == 200
    assert json.loads(response.body)["accepted"] == 1

"""POST /events through chalice.test.Client against the moto server: signature, replay, limits,
per-event results, and what actually lands on the bus (read from the ingest queue, which the
provisioned CXone rule targets — moto delivers PutEvents to SQS targets within the call)."""

from __future__ import annotations

import io
import json
import logging
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from chalice import Chalice
from chalice.test import Client
from rich.console import Console

from chalicelib.push import handler as push
from chalicelib.push.blueprint import build_push_blueprint
from chalicelib.push.handler import SIGNING_SECRETS, SigningSecretCache, handle_push
from chalicelib.push.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signed_headers
from chalicelib.runtime import Runtime, get_runtime, reset_runtime
from scripts.provisioning import cli as provision
from tests.support.environment import REGION
from tests.support.helpers import cxone_event, sqs_lambda_event

PROVISION_HINT = "python -m scripts.provision credentials"


@dataclass
class PushStage:
    runtime: Runtime
    secret: str
    client: Client
    ingest_url: str

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> Any:
        return self.client.http.post("/events", headers=headers or {}, body=body)

    def post_signed(self, body: bytes, now: float | None = None) -> Any:
        return self.post(body, signed_headers(self.secret, body, now))

    def ingested(self) -> list[dict[str, Any]]:
        """Everything on the ingest queue now (removed as it is read)."""
        sqs = self.runtime.sqs
        bodies: list[dict[str, Any]] = []
        while True:
            response = sqs.receive_message(
                QueueUrl=self.ingest_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            messages = response.get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.ingest_url, ReceiptHandle=message["ReceiptHandle"])


def batch(*events: Any) -> bytes:
    return json.dumps({"events": list(events)}).encode("utf-8")


def pushed_event(interaction: str, stage: str = "Connected", sequence: int = 1) -> dict[str, Any]:
    return cxone_event(interaction, stage, sequence, provider_event_id=f"cx-{uuid.uuid4().hex}")


def provider_ids(bodies: list[dict[str, Any]]) -> list[str]:
    return sorted(body["detail"]["eventId"] for body in bodies)


@pytest.fixture(scope="module")
def push_stage_runtime(aws_endpoint: str) -> Iterator[Runtime]:
    """One provisioned stage for the whole module (provisioning costs about a second); each
    test uses events of its own and starts from an empty ingest queue."""
    from chalicelib.config import load_settings
    from chalicelib.stack import stack_spec
    from scripts.provisioning.infra import Clients, provision_infrastructure

    env = {
        "RELAY_APP": "relay",
        "RELAY_STAGE": "t" + uuid.uuid4().hex[:10],
        "RELAY_ACCOUNT_ID": "123456789012",
        "AWS_REGION": REGION,
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        settings = load_settings()
        session = boto3.Session(region_name=REGION)
        provision_infrastructure(Clients.from_session(session), stack_spec(settings), False)
        reset_runtime()
        try:
            yield get_runtime()
        finally:
            reset_runtime()


@pytest.fixture(scope="module")
def push_secret(push_stage_runtime: Runtime) -> str:
    secret = secrets.token_hex(32)
    # Provisioning generated one; the module's tests sign with a value of their own.
    push_stage_runtime.secretsmanager.put_secret_value(
        SecretId=push_stage_runtime.settings.names.push_secret, SecretString=secret
    )
    return secret


@pytest.fixture
def stage(push_stage_runtime: Runtime, push_secret: str) -> Iterator[PushStage]:
    runtime = get_runtime()  # the one the route uses
    app = Chalice("t")
    # A blueprint of its own: Chalice cannot register one blueprint object on two apps.
    app.register_blueprint(build_push_blueprint())
    ingest_url = runtime.sqs.get_queue_url(QueueName=runtime.settings.names.ingest_queue)[
        "QueueUrl"
    ]
    SIGNING_SECRETS.clear()
    with Client(app, stage_name="local") as client:
        pushing = PushStage(runtime, push_secret, client, ingest_url)
        pushing.ingested()  # left over from an earlier test
        yield pushing
    SIGNING_SECRETS.clear()


def test_signed_batch_is_accepted_and_put_on_the_bus(stage: PushStage) -> None:
    events = [pushed_event("int-push-1", s, n) for n, s in enumerate(["Queued", "Offered"])]
    routing = pushed_event("int-push-1")
    routing["detail-type"] = "Routing.StateChanged"
    routing["detail"]["state"] = "Available"
    events.append(routing)

    response = stage.post_signed(batch(*events))

    assert response.status_code == 200
    results = response.json_body["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert all(r["status"] == "accepted" and r["errors"] == {} for r in results)
    landed = {body["detail"]["eventId"]: body for body in stage.ingested()}
    assert set(landed) == {e["detail"]["eventId"] for e in events}
    for event, result in zip(events, results, strict=True):
        body = landed[event["detail"]["eventId"]]
        # Same source, type, time and detail; EventBridge's own new envelope id.
        assert body["source"] == event["source"]
        assert body["detail-type"] == event["detail-type"]
        assert body["detail"] == event["detail"]
        assert body["time"] == event["time"]
        assert body["id"] == result["event_id"] != event["id"]


@pytest.mark.parametrize(
    "tamper",
    ["unsigned", "wrong_secret", "stale", "future", "other_body", "not_hex", "bad_timestamp"],
)
def test_refused_requests_get_401_and_put_nothing_on_the_bus(stage: PushStage, tamper: str) -> None:
    body = batch(pushed_event("int-refused"))
    now = time.time()
    headers = signed_headers(stage.secret, body, now)
    if tamper == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif tamper == "wrong_secret":
        headers = signed_headers(secrets.token_hex(32), body, now)
    elif tamper == "stale":
        headers = signed_headers(stage.secret, body, now - 6 * 60)
    elif tamper == "future":
        headers = signed_headers(stage.secret, body, now + 6 * 60)
    elif tamper == "other_body":
        headers = signed_headers(stage.secret, batch(pushed_event("int-other")), now)
    elif tamper == "not_hex":
        headers[SIGNATURE_HEADER] = "sha256=" + "z" * 64
    elif tamper == "bad_timestamp":
        headers[TIMESTAMP_HEADER] = f"{now:.3f}"

    response = stage.post(body, headers)

    assert response.status_code == 401
    assert response.json_body["Code"] == "UnauthorizedError"
    assert response.json_body["Message"]
    assert stage.ingested() == []


def test_a_replayed_request_is_refused_and_its_events_are_put_once(stage: PushStage) -> None:
    body = batch(pushed_event("int-replay"))
    headers = signed_headers(stage.secret, body)

    first = stage.post(body, headers)
    again = stage.post(body, headers)

    assert first.status_code == 200
    assert again.status_code == 401 and "already used" in again.json_body["Message"]
    assert len(stage.ingested()) == 1


def test_upper_case_hex_is_accepted_and_is_the_same_signature(stage: PushStage) -> None:
    """Some HMAC libraries (.NET's Convert.ToHexString) write upper-case hex: accepted, and
    re-sending it in lower case is still a replay."""
    body = batch(pushed_event("int-replay-case"))
    headers = signed_headers(stage.secret, body)
    shouting = {
        **headers,
        SIGNATURE_HEADER: "sha256=" + headers[SIGNATURE_HEADER][7:].upper(),
    }

    first = stage.post(body, shouting)
    disguised = stage.post(body, headers)

    assert first.status_code == 200
    assert disguised.status_code == 401 and "already used" in disguised.json_body["Message"]
    assert len(stage.ingested()) == 1


def test_a_second_lambda_instance_also_refuses_a_replay(stage: PushStage) -> None:
    """The replay ledger is DynamoDB, not memory: a fresh secret cache (a cold start) still
    refuses a signature another instance accepted."""
    body = batch(pushed_event("int-replay-2"))
    headers = signed_headers(stage.secret, body)
    assert stage.post(body, headers).status_code == 200

    cold = handle_push(headers, body, stage.runtime, secrets=SigningSecretCache())

    assert cold.status_code == 401
    assert len(stage.ingested()) == 1


def test_mixed_batch_gets_per_event_results_and_only_valid_events_reach_the_bus(
    stage: PushStage,
) -> None:
    good_first = pushed_event("int-mixed", "Queued", 0)
    unknown_stage = pushed_event("int-mixed", "Escalated", 1)
    not_an_event = ["a", "list"]
    good_second = pushed_event("int-mixed", "Offered", 2)
    bad_resources = pushed_event("int-mixed", "Connected", 3)
    bad_resources["resources"] = [{"arn": "not a string"}]
    unknown_source = pushed_event("int-mixed", "Closed", 4)
    unknown_source["source"] = "com.example.other"

    response = stage.post_signed(
        batch(good_first, unknown_stage, not_an_event, good_second, bad_resources, unknown_source)
    )

    assert response.status_code == 200
    results = response.json_body["results"]
    assert [r["status"] for r in results] == [
        "accepted",
        "rejected",
        "rejected",
        "accepted",
        "rejected",
        "rejected",
    ]
    assert "detail.stage" in results[1]["errors"]
    assert "Escalated" in results[1]["errors"]["detail.stage"][0]
    assert "_body" in results[2]["errors"]
    assert "resources" in results[4]["errors"]
    assert "source" in results[5]["errors"]
    assert response.json_body["accepted"] == 2 and response.json_body["rejected"] == 4
    assert provider_ids(stage.ingested()) == sorted(
        [good_first["detail"]["eventId"], good_second["detail"]["eventId"]]
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (batch(*[pushed_event("int-many", "Queued", n) for n in range(11)]), "got 11"),
        (batch(), "got 0"),
        (b"{not json", "not valid JSON"),
        (b'{"event": []}', "events: is missing"),
        (b'{"events": {"a": 1}}', "not an array"),
        (b'[{"events": []}]', "expected a JSON object"),
        (b"\xff\xfe", "UTF-8"),
    ],
    ids=["eleven", "empty", "not_json", "no_events", "events_not_list", "array", "not_utf8"],
)
def test_malformed_batches_get_400_and_put_nothing(
    stage: PushStage, body: bytes, expected: str
) -> None:
    response = stage.post_signed(body)

    assert response.status_code == 400
    assert expected in response.json_body["Message"]
    assert stage.ingested() == []


def test_body_over_256_kb_gets_413_and_puts_nothing(stage: PushStage) -> None:
    event = pushed_event("int-big")
    event["detail"]["metadata"] = {"padding": "x" * (300 * 1024)}
    body = batch(event)

    response = stage.post_signed(body)

    assert response.status_code == 413
    assert "262144" in response.json_body["Message"]
    assert stage.ingested() == []


def test_missing_secret_is_503_saying_how_to_create_it(
    stage: PushStage, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = stage.runtime.settings
    names = replace(settings.names, push_secret=f"{settings.prefix}-never-created")
    monkeypatch.setattr(stage.runtime, "settings", replace(settings, names=names))

    response = stage.post_signed(batch(pushed_event("int-nosecret")))

    assert response.status_code == 503
    assert PROVISION_HINT in response.json_body["Message"]
    assert stage.ingested() == []


def test_a_rotated_secret_is_picked_up_without_a_restart(
    stage: PushStage, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = stage.runtime.settings
    names = replace(settings.names, push_secret=f"{settings.prefix}-rotating")
    monkeypatch.setattr(stage.runtime, "settings", replace(settings, names=names))
    original, rotated = secrets.token_hex(32), secrets.token_hex(32)
    stage.runtime.secretsmanager.create_secret(Name=names.push_secret, SecretString=original)
    clock = [1000.0]
    cache = SigningSecretCache(clock=lambda: clock[0])
    first_body = batch(pushed_event("int-rotate"))
    first = handle_push(
        signed_headers(original, first_body), first_body, stage.runtime, secrets=cache
    )
    assert first.status_code == 200
    stage.runtime.secretsmanager.put_secret_value(SecretId=names.push_secret, SecretString=rotated)
    body = batch(pushed_event("int-rotate"))

    clock[0] += 1  # right after a read: a mismatch does not re-read the secret yet
    too_soon = handle_push(signed_headers(rotated, body), body, stage.runtime, secrets=cache)
    clock[0] += push.SECRET_RECHECK_SECONDS
    later = handle_push(signed_headers(rotated, body), body, stage.runtime, secrets=cache)

    assert too_soon.status_code == 401
    assert later.status_code == 200
    assert later.body["accepted"] == 1


def test_rotation_accepts_both_secrets_during_the_overlap_and_only_the_new_one_after(
    stage: PushStage, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = stage.runtime.settings
    names = replace(settings.names, push_secret=f"{settings.prefix}-rotated-{uuid.uuid4().hex}")
    overlap = 3600
    monkeypatch.setattr(
        stage.runtime,
        "settings",
        replace(settings, names=names, push_secret_overlap_seconds=overlap),
    )
    old_key = secrets.token_hex(32)
    stage.runtime.secretsmanager.create_secret(Name=names.push_secret, SecretString=old_key)

    # The operator's command: a new AWSCURRENT version, the old one becomes AWSPREVIOUS.
    monkeypatch.setenv("RELAY_PUSH_SECRET", names.push_secret)
    monkeypatch.setenv("RELAY_PUSH_SECRET_OVERLAP_SECONDS", str(overlap))
    printed = io.StringIO()
    code = provision.main(
        ["rotate-push-secret"], console=Console(file=printed, width=250, color_system=None)
    )
    assert code == 0, printed.getvalue()
    current = stage.runtime.secretsmanager.get_secret_value(SecretId=names.push_secret)
    new_key = current["SecretString"]
    assert new_key != old_key
    assert "AWSCURRENT" in printed.getvalue() and "AWSPREVIOUS" in printed.getvalue()
    assert new_key not in printed.getvalue() and old_key not in printed.getvalue()
    rotated_at = current["CreatedDate"].timestamp()

    def push_at(key: str, now: float) -> int:
        body = batch(pushed_event("int-rotation"))
        headers = signed_headers(key, body, now)
        # A fresh cache per request: this is about which keys are accepted, not caching.
        response = handle_push(headers, body, stage.runtime, now=now, secrets=SigningSecretCache())
        return response.status_code

    during = rotated_at + overlap - 60
    after = rotated_at + overlap + 1
    assert push_at(new_key, during) == 200
    assert push_at(old_key, during) == 200
    assert push_at(new_key, after) == 200
    assert push_at(old_key, after) == 401
    assert len(stage.ingested()) == 3


def test_neither_secret_nor_signature_is_logged_or_returned(
    stage: PushStage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="cxone-relay")
    caplog.set_level(logging.DEBUG, logger="chalicelib")
    body = batch(pushed_event("int-quiet"))
    headers = signed_headers(stage.secret, body)
    responses = [
        stage.post(body, headers),
        stage.post(body, headers),  # replayed
        stage.post(body, signed_headers(secrets.token_hex(32), body)),
    ]

    signature_hex = headers[SIGNATURE_HEADER].removeprefix("sha256=")
    # Every record with its extra fields, as the JSON log line would carry them.
    logged = "\n".join(
        f"{entry.getMessage()} {json.dumps(vars(entry), default=str)}" for entry in caplog.records
    )
    shown = logged + "".join(r.body.decode() for r in responses)
    assert '"refused": "replayed"' in logged and '"refused": "bad_signature"' in logged
    assert stage.secret not in shown
    assert signature_hex not in shown
    assert signature_hex.upper() not in shown


def test_a_retried_request_delivers_each_event_once(stage: PushStage, boto_session) -> None:
    """The client retries with a fresh signature: both requests are accepted, and the pipeline
    recognises the copies by detail.eventId (EventBridge gave them new envelope ids)."""
    import app as app_module

    runtime = stage.runtime
    sqs = boto_session.client("sqs")
    subscriber = sqs.create_queue(QueueName=f"{runtime.settings.prefix}-push-subscriber")
    subscriber_arn = sqs.get_queue_attributes(
        QueueUrl=subscriber["QueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    runtime.sns.subscribe(
        TopicArn=runtime.consumer_topics["crm-updater"],
        Protocol="sqs",
        Endpoint=subscriber_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    events = [pushed_event("int-retry", s, n) for n, s in enumerate(["Queued", "Offered"])]
    body = batch(*events)
    assert stage.post_signed(body, time.time() - 2).status_code == 200
    assert stage.post_signed(body).status_code == 200  # the retry, signed again
    landed = stage.ingested()
    assert len(landed) == 4

    queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{runtime.settings.names.ingest_queue}"
    with Client(app_module.app, stage_name="local") as client:
        result = client.lambda_.invoke("ingest", sqs_lambda_event(landed, queue_arn))
    assert result.payload == {"batchItemFailures": []}

    delivered = sqs.receive_message(
        QueueUrl=subscriber["QueueUrl"], MaxNumberOfMessages=10, WaitTimeSeconds=1
    ).get("Messages", [])
    messages = [json.loads(m["Body"]) for m in delivered]
    assert sorted(m["event"]["detail"]["eventId"] for m in messages) == provider_ids(
        [{"detail": e["detail"]} for e in events]
    )
    assert [m["stage"] for m in sorted(messages, key=lambda m: m["sequence"])] == [
        "Queued",
        "Offered",
    ]


def test_put_events_entry_failures_are_retried_once_then_reported(stage: PushStage) -> None:
    """moto never fails single PutEvents entries, so the Stubber injects EventBridge's
    per-entry answers: a throttled entry is retried once, a refused one is reported."""
    throttled, refused = pushed_event("int-stub", "Queued", 0), pushed_event("int-stub", "Offered")
    body = batch(throttled, refused)
    stubber = Stubber(stage.runtime.events)
    stubber.add_response(
        "put_events",
        {
            "FailedEntryCount": 2,
            "Entries": [
                {"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"},
                {"ErrorCode": "NotAuthorizedForSourceException", "ErrorMessage": "no"},
            ],
        },
    )
    stubber.add_response("put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]})

    with stubber:
        response = stage.post_signed(body)

    stubber.assert_no_pending_responses()
    results = response.json_body["results"]
    assert response.status_code == 200
    assert results[0] == {"index": 0, "status": "accepted", "errors": {}, "event_id": "e-1"}
    assert results[1]["status"] == "rejected"
    assert results[1]["reason"] == "put_failed"
    assert results[1]["errors"]["_bus"][0].startswith("NotAuthorizedForSourceException")


def test_a_bus_that_refuses_the_whole_call_is_503_not_500(
    stage: PushStage, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = replace(stage.runtime.settings.names, event_bus="no-such-bus")
    monkeypatch.setattr(stage.runtime, "settings", replace(stage.runtime.settings, names=names))

    response = stage.post_signed(batch(pushed_event("int-nobus")))

    assert response.status_code == 503
    assert "nothing was put" in response.json_body["Message"]


@dataclass
class _Answer:
    status_code: int
    body: Any

    def json(self) -> Any:
        return self.body


@dataclass
class _ChaliceHttp:
    """requests.Session's `post`, over chalice.test.Client, for the simulator's sender."""

    client: Client

    def post(self, url: str, data: bytes, headers: dict[str, str], timeout: float) -> _Answer:
        response = self.client.http.post("/events", headers=headers, body=data)
        return _Answer(response.status_code, response.json_body)


def test_simulator_https_sender_counts_verdicts_as_sent_and_refusals_as_failures(
    stage: PushStage,
) -> None:
    from scripts.traffic.simulate import send_over_https

    http = _ChaliceHttp(stage.client)
    valid, invalid = pushed_event("int-sim", "Queued", 0), pushed_event("int-sim", "Escalated", 1)

    def no_wait(_: float) -> None:
        return None

    sent = send_over_https(http, "/events", stage.secret, [valid, invalid], sleep=no_wait)
    refused = send_over_https(
        http, "/events", "not-the-secret", [pushed_event("int-sim")], max_attempts=2, sleep=no_wait
    )

    assert (sent.sent, sent.failed) == (2, [])  # the invalid one was the relay's verdict
    assert refused.sent == 0 and [f.error_code for f in refused.failed] == ["HTTP 401"]
    assert provider_ids(stage.ingested()) == [valid["detail"]["eventId"]]

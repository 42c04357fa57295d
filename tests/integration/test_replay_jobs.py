"""Re-drive jobs: POST /replay/jobs, the replay worker, resumption, failures.

Each consumer topic gets an SQS subscriber queue with raw message delivery, as in the local
stack, so the tests read exactly what a consumer would receive.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.errors import DependencyUnavailable
from chalicelib.formats import rfc3339, utc_now
from chalicelib.ingest.fanout import OutboundMessage, PublishResult, publish_ordered
from chalicelib.replay import jobs as replay_jobs
from chalicelib.replay.jobs import ConsumerProgress, JobView, RunOutcome, advance_progress
from chalicelib.runtime import Runtime, reset_runtime
from chalicelib.store.queries import StoredEvent
from tests.support.replay_stage import (
    ROUTING,
    STAGE_CHANGED,
    at,
    delivered,
    make_client,
    runtime_of,
    seed,
    seed_legacy,
    shared_stage_environment,
)


@dataclass(frozen=True)
class Window:
    """A job's two-hour window, 23:00 to 01:00 (so it crosses midnight: two day buckets)."""

    base: datetime

    @property
    def since(self) -> str:
        return rfc3339(self.base)

    @property
    def until(self) -> str:
        return rfc3339(self.base + timedelta(hours=2))

    def events(self, count: int = 30) -> list[dict[str, Any]]:
        """`count` events two minutes apart from 22:58 (the first is before the window),
        three interactions, both detail types; every 4th a routing event."""
        return [
            delivered(
                f"int-{n % 3}",
                f"ev-{self.base:%m%d}-{n:03d}",
                at(self.base, (n - 1) * 120),
                sequence=n // 3,
                detail_type=ROUTING if n % 4 == 0 else STAGE_CHANGED,
                late=n == 7,
            )
            for n in range(count)
        ]

    def inside(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m for m in messages if self.since <= m["occurred_at"] < self.until]


DEFAULT_WINDOW = Window(datetime(2026, 11, 29, 23, 0, tzinfo=UTC))
SINCE, UNTIL = DEFAULT_WINDOW.since, DEFAULT_WINDOW.until
_days_used = itertools.count(1)


@pytest.fixture
def win() -> Window:
    """A window on a day no other test of the shared stage uses."""
    return Window(DEFAULT_WINDOW.base - timedelta(days=next(_days_used)))


@pytest.fixture(scope="module")
def shared_env(aws_endpoint: str) -> Iterator[dict[str, str]]:
    with shared_stage_environment() as env:
        yield env


@pytest.fixture
def stage(shared_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The module's shared stage, for tests that change nothing but their own data; its
    replay and consumer queues are emptied first."""
    for runtime in runtime_of(shared_env, monkeypatch):
        drain(runtime, replay_queue_url(runtime))
        yield runtime


@pytest.fixture
def client(stage: Runtime) -> Iterator[Client]:
    yield from make_client()


@pytest.fixture
def own_client(provisioned: Runtime) -> Iterator[Client]:
    """A client over a stage of the test's own (for tests that break a resource)."""
    yield from make_client()


@pytest.fixture
def bare_client(relay_env: dict[str, str]) -> Iterator[Client]:
    """A client over an unprovisioned stage: requests refused before any AWS call."""
    reset_runtime()
    try:
        yield from make_client()
    finally:
        reset_runtime()


_subscribed: dict[str, dict[str, str]] = {}  # stage -> consumer -> subscriber queue url


def subscriber_queues(runtime: Runtime) -> dict[str, str]:
    """An SQS queue subscribed (raw delivery) to every consumer topic, once per stage, emptied:
    consumer -> queue url."""
    stage_name = runtime.settings.stage
    if stage_name not in _subscribed:
        urls = {}
        for consumer, topic_arn in runtime.consumer_topics.items():
            url = runtime.sqs.create_queue(QueueName=f"{runtime.settings.prefix}-sub-{consumer}")[
                "QueueUrl"
            ]
            arn = runtime.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            runtime.sns.subscribe(
                TopicArn=topic_arn,
                Protocol="sqs",
                Endpoint=arn,
                Attributes={"RawMessageDelivery": "true"},
            )
            urls[consumer] = url
        _subscribed[stage_name] = urls
    for url in _subscribed[stage_name].values():
        drain(runtime, url)
    return _subscribed[stage_name]


@pytest.fixture
def queues(stage: Runtime) -> dict[str, str]:
    return subscriber_queues(stage)


@pytest.fixture
def own_queues(provisioned: Runtime) -> dict[str, str]:
    return subscriber_queues(provisioned)


def drain(runtime: Runtime, queue_url: str) -> list[dict[str, Any]]:
    """Every message now in the queue (bodies as JSON), deleting them."""
    bodies = []
    while True:
        response = runtime.sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        messages = response.get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            runtime.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def replay_queue_url(runtime: Runtime) -> str:
    name = runtime.settings.names.replay_queue
    return runtime.sqs.get_queue_url(QueueName=name)["QueueUrl"]


def drive_worker(client: Client, runtime: Runtime, max_invocations: int = 50) -> int:
    """Feed the replay queue to the worker function as Lambda would; invocations made."""
    url = replay_queue_url(runtime)
    invocations = 0
    while True:
        response = runtime.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0
        )
        messages = response.get("Messages", [])
        if not messages:
            return invocations
        event = client.events.generate_sqs_event(
            [messages[0]["Body"]], queue_name=runtime.settings.names.replay_queue
        )
        client.lambda_.invoke("replay_worker", event)
        runtime.sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
        invocations += 1
        assert invocations < max_invocations, "the job never ends"


def post_job(client: Client, body: Any) -> tuple[int, dict[str, Any]]:
    response = client.http.post(
        "/replay/jobs",
        headers={"Content-Type": "application/json"},
        body=body if isinstance(body, str | bytes) else json.dumps(body),
    )
    return response.status_code, json.loads(response.body)


def job_status(client: Client, job_id: str) -> tuple[int, dict[str, Any]]:
    response = client.http.get(f"/replay/jobs/{job_id}")
    return response.status_code, json.loads(response.body)


# ---- end to end through the API and the worker function -------------------------------------


def test_job_delivers_matching_events_to_named_consumers_only(
    client: Client,
    stage: Runtime,
    win: Window,
    queues: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    messages = win.events()
    seed(stage, messages)
    # Small pages, and a deadline margin longer than the worker's timeout (its time always
    # runs short): the job spans several pages, one continuation message per page.
    monkeypatch.setattr(replay_jobs, "PAGE_SIZE", 4)
    monkeypatch.setattr(replay_jobs, "DEADLINE_MARGIN_MS", 10**9)
    matching = [
        m
        for m in messages
        if win.since <= m["occurred_at"] < win.until and m["detail_type"] == STAGE_CHANGED
    ]

    status, created = post_job(
        client,
        {
            "since": win.since,
            "until": win.until,
            "detail_type": STAGE_CHANGED,
            "consumers": ["crm-updater", "agent-dashboard"],
        },
    )
    assert status == 202
    assert created["status"] == "queued" and set(created) == {"job_id", "status"}
    assert job_status(client, created["job_id"])[1]["status"] == "queued"

    invocations = drive_worker(client, stage)

    status, job = job_status(client, created["job_id"])
    assert status == 200
    assert job["status"] == "done"
    assert job["matched"] == len(matching) > 10
    assert job["published"] == 2 * len(matching)
    assert job["progress"] == 1.0
    assert job["error"] is None
    assert invocations >= len(matching) // 4  # it did continue across invocations
    assert not {"pk", "sk", "lease_owner", "after", "consumer_progress"} & set(job)
    assert set(job) == JobView.__required_keys__  # the typed public shape, all of it

    expected = {m["event_id"]: m for m in matching}
    for consumer in ("crm-updater", "agent-dashboard"):
        received = drain(stage, queues[consumer])
        assert sorted(r["event_id"] for r in received) == sorted(expected)
        for body in received:
            original = expected[body["event_id"]]
            assert body["replay"] is True
            assert body["replay_job_id"] == created["job_id"]
            # Everything else is the stored message, received_at and late included.
            assert {k: v for k, v in body.items() if k not in ("replay", "replay_job_id")} == {
                k: v for k, v in original.items() if k not in ("replay", "replay_job_id")
            }
        # In window order per interaction (standard queues keep no order beyond what moto
        # happens to keep; the order published is what is checked here).
        for interaction in ("int-0", "int-1", "int-2"):
            sequence = [r["sequence"] for r in received if r["interaction_id"] == interaction]
            assert sequence == sorted(sequence)
    assert drain(stage, queues["analytics-sink"]) == []


def test_job_re_drives_items_of_the_earlier_layout_unchanged(
    client: Client, stage: Runtime, win: Window, queues: dict[str, str]
) -> None:
    """Events stored before the compact layout (whole message in `msg`, compressed or plain)
    are re-driven like new ones: the stored message, marked as a replay."""
    messages = win.events(12)
    seed(stage, messages[0::2])
    seed_legacy(stage, messages[1::2])
    status, created = post_job(
        client, {"since": win.since, "until": win.until, "consumers": ["crm-updater"]}
    )
    assert status == 202
    drive_worker(client, stage)
    assert job_status(client, created["job_id"])[1]["status"] == "done"
    expected = {m["event_id"]: m for m in win.inside(messages)}
    received = drain(stage, queues["crm-updater"])
    assert sorted(r["event_id"] for r in received) == sorted(expected)
    for body in received:
        assert body == {
            **expected[body["event_id"]],
            "replay": True,
            "replay_job_id": created["job_id"],
        }


def test_job_for_one_interaction(
    client: Client, stage: Runtime, win: Window, queues: dict[str, str]
) -> None:
    messages = win.events()
    seed(stage, messages)
    status, created = post_job(
        client,
        {
            "since": win.since,
            "until": win.until,
            "interaction_id": "int-1",
            "consumers": ["crm-updater"],
        },
    )
    assert status == 202
    drive_worker(client, stage)
    expected = [
        m["event_id"]
        for m in messages
        if win.since <= m["occurred_at"] < win.until and m["interaction_id"] == "int-1"
    ]
    job = job_status(client, created["job_id"])[1]
    assert (job["status"], job["matched"], job["published"]) == (
        "done",
        len(expected),
        len(expected),
    )
    received = drain(stage, queues["crm-updater"])
    assert [r["event_id"] for r in received] == expected


def test_empty_window_job_is_done_with_zero_counts(
    client: Client, stage: Runtime, win: Window
) -> None:
    status, created = post_job(
        client, {"since": win.since, "until": win.until, "consumers": ["analytics-sink"]}
    )
    assert status == 202
    drive_worker(client, stage)
    job = job_status(client, created["job_id"])[1]
    assert (job["status"], job["matched"], job["published"]) == ("done", 0, 0)


def test_unknown_job_is_404(client: Client) -> None:
    for job_id in ("0" * 32, "not-a-job", "x" * 500):
        status, body = job_status(client, job_id)
        assert status == 404
        assert body["Code"] == "NotFoundError"
        assert body["Message"].startswith("job_id: ")


@pytest.mark.parametrize(
    ("body", "parameter", "says"),
    [
        (
            {"since": SINCE, "until": UNTIL, "consumers": ["crm-updater", "billing"]},
            "consumers",
            "'billing'",
        ),
        ({"since": SINCE, "until": UNTIL, "consumers": []}, "consumers", "non-empty"),
        ({"since": SINCE, "until": UNTIL, "consumers": "crm-updater"}, "consumers", "array"),
        ({"since": SINCE, "until": UNTIL}, "consumers", "required"),
        ({"until": UNTIL, "consumers": ["crm-updater"]}, "since", "required"),
        ({"since": UNTIL, "until": SINCE, "consumers": ["crm-updater"]}, "until", "later"),
        (
            {"since": "2026-11-29 23:00:00", "until": UNTIL, "consumers": ["crm-updater"]},
            "since",
            "RFC 3339",
        ),
        (
            {"since": "2026-01-01T00:00:00Z", "until": UNTIL, "consumers": ["crm-updater"]},
            "until",
            "retention",
        ),
        (
            {"since": SINCE, "until": UNTIL, "consumers": ["crm-updater"], "limit": 5},
            "limit",
            "not a parameter",
        ),
        ({"since": 5, "until": UNTIL, "consumers": ["crm-updater"]}, "since", "RFC 3339"),
        ("{not json", "body", "not valid JSON"),
        ("[1, 2]", "body", "JSON object"),
        ("", "body", "empty"),
    ],
)
def test_bad_job_requests_are_400(
    bare_client: Client, body: Any, parameter: str, says: str
) -> None:
    status, response = post_job(bare_client, body)
    assert status == 400
    assert response["Code"] == "BadRequestError"
    assert response["Message"].startswith(f"{parameter}: ")
    assert says in response["Message"]


def test_unknown_consumer_is_400_and_starts_nothing(client: Client, stage: Runtime) -> None:
    # The test may scan its own small table; the app never scans.
    def jobs() -> int:
        return stage.dynamodb.scan(TableName=stage.settings.names.jobs_table, Select="COUNT")[
            "Count"
        ]

    before = jobs()
    status, response = post_job(
        client, {"since": SINCE, "until": UNTIL, "consumers": ["crm-updater", "billing"]}
    )
    assert status == 400
    assert response["Message"] == (
        "consumers: unknown consumer 'billing'; "
        "configured consumers: analytics-sink, crm-updater, agent-dashboard"
    )
    queued = stage.sqs.receive_message(QueueUrl=replay_queue_url(stage), WaitTimeSeconds=0)
    assert not queued.get("Messages")
    assert jobs() == before


def test_job_that_cannot_be_queued_is_503_and_recorded_as_failed(
    own_client: Client, provisioned: Runtime
) -> None:
    # A real failure: the replay queue is gone, so SQS refuses the job's message.
    provisioned.sqs.delete_queue(QueueUrl=replay_queue_url(provisioned))
    status, body = post_job(
        own_client, {"since": SINCE, "until": UNTIL, "consumers": ["crm-updater"]}
    )
    assert status == 503
    assert body == {
        "Code": "ServiceUnavailable",
        "Message": "the job could not be queued; try again shortly",
    }
    jobs = provisioned.dynamodb.scan(TableName=provisioned.settings.names.jobs_table)["Items"]
    assert [(j["status"]["S"], j["error"]["S"]) for j in jobs] == [
        ("failed", "the job could not be queued")
    ]


def test_start_job_reports_an_unqueueable_job_as_a_dependency_failure(provisioned: Runtime) -> None:
    """The API's 503 comes from this: start_job raises the retryable family, naming the SQS
    error, and leaves the job recorded as failed rather than queued forever."""
    provisioned.sqs.delete_queue(QueueUrl=replay_queue_url(provisioned))
    request = replay_jobs.JobRequest(
        since=SINCE, until=UNTIL, detail_type=None, interaction_id=None, consumers=("crm-updater",)
    )

    with pytest.raises(DependencyUnavailable, match=r"could not be queued.*NonExistentQueue"):
        replay_jobs.start_job(provisioned, request)

    jobs = provisioned.dynamodb.scan(TableName=provisioned.settings.names.jobs_table)["Items"]
    assert [j["status"]["S"] for j in jobs] == ["failed"]


# ---- resumption -----------------------------------------------------------------------------


class CrashingPublish:
    """Wraps publish_ordered; raises `crash` on the `on_call`-th publish to `topic_arn`.

    An injected fault: moto cannot make a worker die half-way through a job.
    """

    def __init__(self, topic_arn: str, on_call: int, crash: BaseException) -> None:
        self.topic_arn = topic_arn
        self.on_call = on_call
        self.crash = crash
        self.calls_to_topic = 0
        self.dedup_ids: list[str] = []

    def __call__(
        self, sns: Any, topic_arn: str, messages: Sequence[OutboundMessage]
    ) -> PublishResult:
        if topic_arn == self.topic_arn:
            self.calls_to_topic += 1
            if self.calls_to_topic == self.on_call:
                raise self.crash
        self.dedup_ids.extend(m.dedup_id for m in messages)
        return publish_ordered(sns, topic_arn, messages)


def _start(runtime: Runtime, consumers: list[str], window: Window = DEFAULT_WINDOW) -> str:
    request = replay_jobs.JobRequest(
        since=window.since,
        until=window.until,
        detail_type=None,
        interaction_id=None,
        consumers=tuple(consumers),
    )
    job = replay_jobs.create_job(
        runtime.dynamodb,
        runtime.settings.names.jobs_table,
        request,
        retention_days=30,
        now=utc_now(),
    )
    return job.job_id


def _job(runtime: Runtime, job_id: str) -> replay_jobs.Job:
    job = replay_jobs.get_job(runtime.dynamodb, runtime.settings.names.jobs_table, job_id)
    assert job is not None
    return job


def _assert_each_once(runtime: Runtime, queue_url: str, expected: list[str]) -> None:
    received = [r["event_id"] for r in drain(runtime, queue_url)]
    assert sorted(received) == sorted(expected), "an event was lost or sent twice"


def test_job_crashing_mid_page_resumes_without_sending_anything_twice(
    stage: Runtime, win: Window, queues: dict[str, str]
) -> None:
    messages = win.events()
    seed(stage, messages)
    expected = [m["event_id"] for m in messages if win.since <= m["occurred_at"] < win.until]
    job_id = _start(stage, ["crm-updater", "agent-dashboard"], win)
    # Page 2's publish to agent-dashboard fails; crm-updater's publish of page 2 goes through.
    crashing = CrashingPublish(
        stage.consumer_topics["agent-dashboard"], on_call=2, crash=RuntimeError("boom")
    )

    with pytest.raises(RuntimeError, match="boom"):
        replay_jobs.run_job(stage, job_id, publish=crashing, page_size=10)

    halfway = _job(stage, job_id)
    assert halfway.status == "running"
    assert halfway.matched == 10  # page 1 complete, page 2 not
    assert halfway.published == 10 + 10 + 10  # page 1 to both, page 2 to crm-updater

    # The message comes back; the next worker resumes from the checkpoint at once (the
    # crashed worker released its lease on the way out).
    outcome = replay_jobs.run_job(stage, job_id, publish=crashing, page_size=10)

    assert outcome is RunOutcome.DONE
    done = _job(stage, job_id)
    assert (done.status, done.matched, done.published) == ("done", 29, 58)
    _assert_each_once(stage, queues["crm-updater"], expected)
    _assert_each_once(stage, queues["agent-dashboard"], expected)
    # FIFO dedup ids: job id + event id, one per event and consumer.
    assert set(crashing.dedup_ids) == {f"{job_id}:{e}" for e in expected}
    assert len(crashing.dedup_ids) == 2 * len(expected)


def test_killed_worker_holds_the_job_until_its_lease_expires(
    stage: Runtime, win: Window, queues: dict[str, str]
) -> None:
    messages = win.events()
    seed(stage, messages)
    expected = [m["event_id"] for m in messages if win.since <= m["occurred_at"] < win.until]
    job_id = _start(stage, ["analytics-sink"], win)
    # SystemExit is not caught by the worker: like a killed process, it leaves its lease.
    killed = CrashingPublish(
        stage.consumer_topics["analytics-sink"], on_call=3, crash=SystemExit(1)
    )
    with pytest.raises(SystemExit):
        replay_jobs.run_job(stage, job_id, publish=killed, page_size=5)

    with pytest.raises(replay_jobs.JobBusy):
        replay_jobs.run_job(stage, job_id, page_size=5)

    later = utc_now() + timedelta(seconds=stage.settings.lease_seconds + 1)
    outcome = replay_jobs.run_job(stage, job_id, page_size=5, clock=lambda: later)

    assert outcome is RunOutcome.DONE
    assert (_job(stage, job_id).matched, _job(stage, job_id).published) == (29, 29)
    _assert_each_once(stage, queues["analytics-sink"], expected)


def test_repeated_message_after_done_sends_nothing(
    stage: Runtime, win: Window, queues: dict[str, str]
) -> None:
    seed(stage, win.events(6))
    job_id = _start(stage, ["crm-updater"], win)
    assert replay_jobs.run_job(stage, job_id) is RunOutcome.DONE
    drain(stage, queues["crm-updater"])
    assert replay_jobs.run_job(stage, job_id) is RunOutcome.FINISHED_BEFORE
    assert drain(stage, queues["crm-updater"]) == []
    assert replay_jobs.run_job(stage, "f" * 32) is RunOutcome.UNKNOWN_JOB


def test_publish_failures_are_retried_then_fail_the_job_naming_the_consumer(
    own_client: Client, provisioned: Runtime, own_queues: dict[str, str]
) -> None:
    messages = DEFAULT_WINDOW.events(10)
    seed(provisioned, messages)
    expected = [m["event_id"] for m in messages if SINCE <= m["occurred_at"] < UNTIL]
    job_id = _start(provisioned, ["crm-updater", "agent-dashboard"])
    # A real failure: the topic is gone, so SNS answers NotFound on every publish to it.
    provisioned.sns.delete_topic(TopicArn=provisioned.consumer_topics["agent-dashboard"])

    outcomes = [
        replay_jobs.run_job(provisioned, job_id) for _ in range(replay_jobs.MAX_PUBLISH_ATTEMPTS)
    ]

    assert outcomes[:-1] == [RunOutcome.RETRY_SCHEDULED] * (replay_jobs.MAX_PUBLISH_ATTEMPTS - 1)
    assert outcomes[-1] is RunOutcome.FAILED
    status, job = job_status(own_client, job_id)
    assert status == 200
    assert job["status"] == "failed"
    assert "agent-dashboard" in job["error"] and "NotFound" in job["error"]
    assert job["published"] == len(expected)  # crm-updater got the page, once
    _assert_each_once(provisioned, own_queues["crm-updater"], expected)
    # Each retry was queued with a delay, for the worker to pick up later.
    attributes = provisioned.sqs.get_queue_attributes(
        QueueUrl=replay_queue_url(provisioned),
        AttributeNames=["ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    assert int(attributes["ApproximateNumberOfMessagesDelayed"]) >= 1


# ---- progress arithmetic (pure) -------------------------------------------------------------


def _page(*keys: str) -> list[StoredEvent]:
    return [StoredEvent(key, {}) for key in keys]


@pytest.mark.parametrize(
    ("before", "sent", "after"),
    [
        (ConsumerProgress(), {"a", "b", "c"}, ConsumerProgress("c", ())),
        (ConsumerProgress(), {"a", "c"}, ConsumerProgress("a", ("c",))),
        (ConsumerProgress(), {"b"}, ConsumerProgress(None, ("b",))),
        (ConsumerProgress(None, ("b",)), {"a"}, ConsumerProgress("b", ())),
        (ConsumerProgress("a", ("c",)), {"b", "d"}, ConsumerProgress("d", ())),
    ],
)
def test_progress_watermark_moves_over_what_the_consumer_has(
    before: ConsumerProgress, sent: set[str], after: ConsumerProgress
) -> None:
    assert advance_progress(before, _page("a", "b", "c", "d"), sent) == after
    assert all(after.covers(key) for key in sent)


def test_progress_round_trips_through_the_item_format() -> None:
    progress = ConsumerProgress("2026#x", ("2026#y", "2026#z"))
    assert ConsumerProgress.from_item(progress.to_item()) == progress
    assert ConsumerProgress.from_item(ConsumerProgress().to_item()) == ConsumerProgress()

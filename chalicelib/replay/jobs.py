"""Re-drive jobs: re-publish stored events of a window to chosen consumers, resumably.

Job record (jobs table, one item per job):

    pk "JOB#<job id>", sk "JOB"
    status            queued -> running -> done | failed
    since, until, detail_type?, interaction_id?, consumers (list, as asked)
    matched           events of the window handled so far (each counted once)
    published         successful publishes, event x consumer
    skipped           event x consumer pairs not sent: the replay message would exceed SNS's
                      256 KB (a replay adds a job id to a message that was already delivered)
    after             checkpoint: time_sort of the last index entry fully handled; the next
                      page starts after it
    reached           occurred_at of that entry (for the progress fraction)
    consumer_progress per consumer {"through": time_sort, "extra": [time_sort, ...]}: that
                      consumer got every event up to `through`, plus those in `extra` (sent
                      out of order when a batch partly failed). Written right after each
                      consumer's publish, so a worker that crashes mid-page resumes without
                      re-sending to the consumers that already got the page.
    attempts          consecutive pages whose publish failed (reset by a good page)
    lease_owner, lease_until   one worker at a time (conditional writes, like the ingest lease)
    created_at, started_at, updated_at, finished_at, error, expires_at (TTL)

The worker (an SQS-triggered function, batch size 1, message {"job_id"}) takes the lease,
then per page: reads up to 100 matching events after the checkpoint (queries.window), publishes
them in order to each consumer's topic concurrently (replay: true, replay_job_id, FIFO dedup
id "<job id>:<event id>"), records each consumer's progress, then advances the checkpoint.
Before the invocation's time runs short it releases the lease and queues a continuation
message, so a job of any size never meets the Lambda timeout. Only a crash between a publish
and its progress write can repeat a delivery (FIFO topics drop such repeats by dedup id).
Events stored after the job passed their position are not part of the job.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, Literal, TypedDict

from chalicelib.api.params import JobRequest
from chalicelib.aws import QUEUE_URLS, AwsFailure, compute_backoff, error_code
from chalicelib.errors import DependencyUnavailable, RelayError
from chalicelib.formats import one_of, parse_rfc3339, rfc3339, utc_now
from chalicelib.ingest.fanout import OutboundMessage, PublishResult, publish_ordered
from chalicelib.model import SNS_MAX_MESSAGE_BYTES
from chalicelib.runtime import Runtime
from chalicelib.store.layout import StoreTables
from chalicelib.store.queries import StoredEvent, WindowFilter, window
from chalicelib.telemetry import logger
from chalicelib.timing import VISIBILITY_FACTOR, ingest_timeout_seconds

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

JOB_KEY_PREFIX = "JOB#"
JOB_SORT_KEY = "JOB"
# A job's status, as stored and as GET /replay/jobs/{job_id} shows it.
JobStatus = Literal["queued", "running", "done", "failed"]
JOB_STATUSES: tuple[JobStatus, ...] = ("queued", "running", "done", "failed")
QUEUED: Final = "queued"
RUNNING: Final = "running"
DONE: Final = "done"
FAILED: Final = "failed"
PAGE_SIZE = 100
# Stop starting pages when the Lambda has less than this left: a page (100 events to a few
# topics) takes seconds, the margin leaves room for the continuation message.
DEADLINE_MARGIN_MS = 30_000
# A page whose publish keeps failing is retried this many times (with a growing delay),
# then the job fails and says which consumer and which error.
MAX_PUBLISH_ATTEMPTS = 5
MAX_RETRY_DELAY_SECONDS = 900  # SQS's maximum DelaySeconds
_JOB_ID = re.compile(r"[0-9a-f]{32}")

PublishFunction = Callable[[Any, str, Sequence[OutboundMessage]], PublishResult]


class JobBusy(DependencyUnavailable):
    """Another worker holds the job's lease: the message comes back later, when a retry can
    take it."""


class LeaseLost(RelayError):
    """This worker's lease expired and another worker took the job over; `run_job` stops on
    it (it never leaves the worker)."""


class RunOutcome(Enum):
    DONE = "done"
    FAILED = "failed"
    CONTINUED = "continued"  # time ran short; a continuation message is queued
    RETRY_SCHEDULED = "retry_scheduled"  # a publish failed; retried after a delay
    FINISHED_BEFORE = "finished_before"  # the job had already ended (a repeated message)
    UNKNOWN_JOB = "unknown_job"


@dataclass(frozen=True)
class ConsumerProgress:
    through: str | None = None
    extra: tuple[str, ...] = ()

    def covers(self, time_sort: str) -> bool:
        return (self.through is not None and time_sort <= self.through) or time_sort in self.extra

    def to_item(self) -> dict[str, Any]:
        value: dict[str, Any] = {"extra": {"L": [{"S": key} for key in self.extra]}}
        if self.through is not None:
            value["through"] = {"S": self.through}
        return {"M": value}

    @classmethod
    def from_item(cls, value: dict[str, Any]) -> ConsumerProgress:
        fields_ = value["M"]
        through = fields_.get("through", {}).get("S")
        return cls(through, tuple(entry["S"] for entry in fields_.get("extra", {}).get("L", [])))


def advance_progress(
    progress: ConsumerProgress, page: Sequence[StoredEvent], sent: set[str]
) -> ConsumerProgress:
    """Progress after `sent` (time_sorts) were published: the watermark moves over every
    event of the page, in order, that the consumer now has; the rest it has stays in extra."""
    have = set(progress.extra) | sent
    through = progress.through
    for event in page:
        if through is not None and event.time_sort <= through:
            continue
        if event.time_sort not in have:
            break
        through = event.time_sort
    extra = tuple(sorted(key for key in have if through is None or key > through))
    return ConsumerProgress(through, extra)


class JobView(TypedDict):
    """GET /replay/jobs/{job_id}: a job's public shape, without keys, leases or checkpoints."""

    job_id: str
    status: JobStatus
    matched: int  # events of the window handled so far
    published: int  # event x consumer publishes
    skipped: int  # event x consumer pairs too large to re-send
    progress: float  # 0.0 to 1.0, by time through the window
    since: str
    until: str
    detail_type: str | None
    interaction_id: str | None
    consumers: list[str]
    created_at: str | None
    started_at: str | None
    updated_at: str | None
    finished_at: str | None
    error: str | None


@dataclass(frozen=True)
class Job:
    job_id: str
    status: JobStatus
    since: str
    until: str
    detail_type: str | None
    interaction_id: str | None
    consumers: tuple[str, ...]
    matched: int = 0
    published: int = 0
    skipped: int = 0
    attempts: int = 0
    after: str | None = None
    reached: str | None = None
    consumer_progress: dict[str, ConsumerProgress] = field(default_factory=dict)
    created_at: str | None = None
    started_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    error: str | None = None

    @property
    def window_filter(self) -> WindowFilter:
        return WindowFilter(self.since, self.until, self.detail_type, self.interaction_id)

    def progress_fraction(self) -> float:
        """How far through the window the job is, by time (0.0 to 1.0)."""
        if self.status == DONE:
            return 1.0
        if self.reached is None:
            return 0.0
        since, until, reached = (parse_rfc3339(t) for t in (self.since, self.until, self.reached))
        fraction = (reached - since) / (until - since)
        return round(min(max(fraction, 0.0), 1.0), 4)

    def view(self) -> JobView:
        """The public shape (GET /replay/jobs/{job_id})."""
        return {
            "job_id": self.job_id,
            "status": self.status,
            "matched": self.matched,
            "published": self.published,
            "skipped": self.skipped,
            "progress": self.progress_fraction(),
            "since": self.since,
            "until": self.until,
            "detail_type": self.detail_type,
            "interaction_id": self.interaction_id,
            "consumers": list(self.consumers),
            "created_at": self.created_at,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }


def _s(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value is not None else None


def _n(item: dict[str, Any], name: str) -> int:
    value = item.get(name)
    return int(value["N"]) if value is not None else 0


def _status(text: str) -> JobStatus:
    status = one_of(text, JOB_STATUSES)
    if status is None:
        raise ValueError(f"a replay job item has an unknown status {text!r}")
    return status


def job_from_item(item: dict[str, Any]) -> Job:
    progress = item.get("consumer_progress", {"M": {}})["M"]
    return Job(
        job_id=item["job_id"]["S"],
        status=_status(item["status"]["S"]),
        since=item["since"]["S"],
        until=item["until"]["S"],
        detail_type=_s(item, "detail_type"),
        interaction_id=_s(item, "interaction_id"),
        consumers=tuple(entry["S"] for entry in item["consumers"]["L"]),
        matched=_n(item, "matched"),
        published=_n(item, "published"),
        skipped=_n(item, "skipped"),
        attempts=_n(item, "attempts"),
        after=_s(item, "after"),
        reached=_s(item, "reached"),
        consumer_progress={name: ConsumerProgress.from_item(v) for name, v in progress.items()},
        created_at=_s(item, "created_at"),
        started_at=_s(item, "started_at"),
        updated_at=_s(item, "updated_at"),
        finished_at=_s(item, "finished_at"),
        error=_s(item, "error"),
    )


def job_key(job_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": JOB_KEY_PREFIX + job_id}, "sk": {"S": JOB_SORT_KEY}}


def new_job_id() -> str:
    return uuid.uuid4().hex


def is_job_id(text: str) -> bool:
    return _JOB_ID.fullmatch(text) is not None


# ---- API side -------------------------------------------------------------------------------


def create_job(
    dynamodb: DynamoDBClient, table: str, request: JobRequest, *, retention_days: int, now: datetime
) -> Job:
    """Record a queued job (the caller then queues its message)."""
    job_id = new_job_id()
    stamp = rfc3339(now)
    item: dict[str, Any] = {
        **job_key(job_id),
        "job_id": {"S": job_id},
        "status": {"S": QUEUED},
        "since": {"S": request.since},
        "until": {"S": request.until},
        "consumers": {"L": [{"S": consumer} for consumer in request.consumers]},
        "matched": {"N": "0"},
        "published": {"N": "0"},
        "skipped": {"N": "0"},
        "attempts": {"N": "0"},
        "consumer_progress": {"M": {}},
        "created_at": {"S": stamp},
        "updated_at": {"S": stamp},
        "expires_at": {"N": str(int((now + timedelta(days=retention_days)).timestamp()))},
    }
    if request.detail_type is not None:
        item["detail_type"] = {"S": request.detail_type}
    if request.interaction_id is not None:
        item["interaction_id"] = {"S": request.interaction_id}
    dynamodb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
    return job_from_item(item)


def get_job(dynamodb: DynamoDBClient, table: str, job_id: str) -> Job | None:
    if not is_job_id(job_id):
        return None
    response = dynamodb.get_item(TableName=table, Key=job_key(job_id), ConsistentRead=True)
    item = response.get("Item")
    return job_from_item(item) if item else None


def enqueue_job(runtime: Runtime, job_id: str, delay_seconds: int = 0) -> None:
    runtime.sqs.send_message(
        QueueUrl=QUEUE_URLS.url(runtime.sqs, runtime.settings.names.replay_queue),
        MessageBody=json.dumps({"job_id": job_id}),
        DelaySeconds=delay_seconds,
    )


def start_job(runtime: Runtime, request: JobRequest, *, now: datetime | None = None) -> Job:
    """Record the job and queue its start; a job that could not be queued is marked failed.

    Raises DependencyUnavailable when the jobs table or the replay queue fails.
    """
    settings = runtime.settings
    try:
        job = create_job(
            runtime.dynamodb,
            settings.names.jobs_table,
            request,
            retention_days=settings.store_retention_days,
            now=now or utc_now(),
        )
    except AwsFailure as error:
        raise DependencyUnavailable(
            f"the job could not be recorded ({error_code(error)})"
        ) from error
    try:
        enqueue_job(runtime, job.job_id)
    except AwsFailure as error:
        _set_failed(runtime, job.job_id, "the job could not be queued", owner=None)
        raise DependencyUnavailable(f"the job could not be queued ({error_code(error)})") from error
    return job


def job_id_from_message(body: str) -> str | None:
    """The job id of a worker message, or None if the message is not one."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    job_id = document.get("job_id") if isinstance(document, dict) else None
    return job_id if isinstance(job_id, str) and is_job_id(job_id) else None


# ---- worker ---------------------------------------------------------------------------------


def _now_ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)


def _conditional_failed(error: BaseException) -> bool:
    return error_code(error) == "ConditionalCheckFailedException"


def _acquire(runtime: Runtime, job_id: str, owner: str, now: datetime) -> Job:
    settings = runtime.settings
    stamp = rfc3339(now)
    response = runtime.dynamodb.update_item(
        TableName=settings.names.jobs_table,
        Key=job_key(job_id),
        UpdateExpression=(
            "SET #status = :running, lease_owner = :owner, lease_until = :lease, "
            "updated_at = :stamp, started_at = if_not_exists(started_at, :stamp)"
        ),
        ConditionExpression=(
            "attribute_exists(pk) AND #status IN (:queued, :running) AND "
            "(attribute_not_exists(lease_until) OR lease_until < :now)"
        ),
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={
            ":running": {"S": RUNNING},
            ":queued": {"S": QUEUED},
            ":owner": {"S": owner},
            ":lease": {"N": str(_now_ms(now) + settings.lease_seconds * 1000)},
            ":now": {"N": str(_now_ms(now))},
            ":stamp": {"S": stamp},
        },
        ReturnValues="ALL_NEW",
    )
    return job_from_item(response["Attributes"])


def _owned_update(
    runtime: Runtime,
    job_id: str,
    owner: str | None,
    expression: str,
    values: dict[str, Any],
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An update that only the lease holder may make (owner None: no lease check)."""
    request: dict[str, Any] = {
        "TableName": runtime.settings.names.jobs_table,
        "Key": job_key(job_id),
        "UpdateExpression": expression,
        "ExpressionAttributeValues": dict(values),
        "ReturnValues": "ALL_NEW",
    }
    if owner is not None:
        request["ConditionExpression"] = "lease_owner = :owner"
        request["ExpressionAttributeValues"][":owner"] = {"S": owner}
    else:
        request["ConditionExpression"] = "attribute_exists(pk)"
    if names:
        request["ExpressionAttributeNames"] = names
    try:
        attributes: dict[str, Any] = runtime.dynamodb.update_item(**request)["Attributes"]
    except AwsFailure as error:
        if _conditional_failed(error):
            raise LeaseLost(job_id) from None
        raise
    return attributes


def _lease_values(runtime: Runtime, now: datetime) -> dict[str, Any]:
    return {
        ":lease": {"N": str(_now_ms(now) + runtime.settings.lease_seconds * 1000)},
        ":stamp": {"S": rfc3339(now)},
    }


def _release(runtime: Runtime, job_id: str, owner: str, now: datetime) -> None:
    # LeaseLost: someone else holds it now, so there is nothing of ours to release.
    with contextlib.suppress(LeaseLost):
        _owned_update(
            runtime,
            job_id,
            owner,
            "REMOVE lease_owner, lease_until SET updated_at = :stamp",
            {":stamp": {"S": rfc3339(now)}},
        )


def _set_failed(runtime: Runtime, job_id: str, message: str, owner: str | None) -> Job:
    stamp = rfc3339(utc_now())
    item = _owned_update(
        runtime,
        job_id,
        owner,
        "SET #status = :failed, #error = :error, finished_at = :stamp, updated_at = :stamp "
        "REMOVE lease_owner, lease_until",
        {":failed": {"S": FAILED}, ":error": {"S": message}, ":stamp": {"S": stamp}},
        {"#status": "status", "#error": "error"},
    )
    return job_from_item(item)


@dataclass(frozen=True)
class _ConsumerRound:
    consumer: str
    progress: ConsumerProgress
    published: int
    skipped: int
    failure: str | None  # an SNS error code, when something was not published


def replay_message(message: dict[str, Any], job_id: str) -> dict[str, Any]:
    """The stored delivered message as re-sent: everything kept (received_at, late) but the
    replay fields, which tell consumers that dedupe on event_id a replay from a duplicate."""
    return {**message, "replay": True, "replay_job_id": job_id}


def _publish_to_consumer(
    runtime: Runtime,
    job: Job,
    owner: str,
    consumer: str,
    topic_arn: str,
    events: Sequence[StoredEvent],
    publish: PublishFunction,
    clock: Callable[[], datetime],
) -> _ConsumerRound:
    progress = job.consumer_progress.get(consumer, ConsumerProgress())
    outbound: list[OutboundMessage] = []
    too_large: set[str] = set()
    for event in events:
        if progress.covers(event.time_sort):
            continue
        message = OutboundMessage.from_message(
            event.time_sort,
            replay_message(event.message, job.job_id),
            dedup_id=f"{job.job_id}:{event.message['event_id']}",
        )
        if message.size > SNS_MAX_MESSAGE_BYTES:
            too_large.add(event.time_sort)
        else:
            outbound.append(message)
    if not outbound and not too_large:
        return _ConsumerRound(consumer, progress, 0, 0, None)
    result = publish(runtime.sns, topic_arn, outbound) if outbound else PublishResult()
    updated = advance_progress(progress, events, result.published | too_large)
    now = clock()
    _owned_update(
        runtime,
        job.job_id,
        owner,
        "SET consumer_progress.#consumer = :progress, updated_at = :stamp, lease_until = :lease "
        "ADD published :published, skipped :skipped",
        {
            ":progress": updated.to_item(),
            ":published": {"N": str(len(result.published))},
            ":skipped": {"N": str(len(too_large))},
            **_lease_values(runtime, now),
        },
        {"#consumer": consumer},
    )
    failure = next(iter(result.failed.values()), None) if result.failed else None
    return _ConsumerRound(consumer, updated, len(result.published), len(too_large), failure)


def _publish_page(
    runtime: Runtime,
    job: Job,
    owner: str,
    events: Sequence[StoredEvent],
    publish: PublishFunction,
    clock: Callable[[], datetime],
) -> list[_ConsumerRound]:
    """Publish to every consumer concurrently; each records its own progress when done.

    If one consumer's publish raises, the others still finish and record theirs before the
    error goes on, so a resumed job repeats nothing for them.
    """
    topics = runtime.consumer_topics
    futures = [
        runtime.executor.submit(
            _publish_to_consumer,
            runtime,
            job,
            owner,
            consumer,
            topics[consumer],
            events,
            publish,
            clock,
        )
        for consumer in job.consumers
    ]
    rounds: list[_ConsumerRound] = []
    first_error: BaseException | None = None
    for future in futures:
        try:
            rounds.append(future.result())
        except BaseException as error:  # re-raised below, once every consumer has finished
            first_error = first_error or error
    if first_error is not None:
        raise first_error
    return rounds


def _time_budget_seconds(runtime: Runtime) -> float:
    # Half the replay queue's visibility timeout: the message must not come back to a second
    # worker while this one still runs (it would only find the lease held, but wastes a try).
    return VISIBILITY_FACTOR * ingest_timeout_seconds(runtime.settings.stage) / 2


def run_job(
    runtime: Runtime,
    job_id: str,
    *,
    remaining_ms: Callable[[], int] | None = None,
    publish: PublishFunction = publish_ordered,
    clock: Callable[[], datetime] = utc_now,
    page_size: int | None = None,
) -> RunOutcome:
    """Work on a job until it ends or this invocation's time runs short.

    Raises JobBusy when another worker holds the lease (the message comes back later), and
    lets unexpected errors through after releasing the lease (the message comes back and the
    job resumes from its checkpoint).
    """
    settings = runtime.settings
    owner = uuid.uuid4().hex
    try:
        job = _acquire(runtime, job_id, owner, clock())
    except AwsFailure as error:
        if not _conditional_failed(error):
            raise
        current = get_job(runtime.dynamodb, settings.names.jobs_table, job_id)
        if current is None:
            logger.warning("replay job does not exist; message dropped", extra={"job_id": job_id})
            return RunOutcome.UNKNOWN_JOB
        if current.status in (DONE, FAILED):
            return RunOutcome.FINISHED_BEFORE
        raise JobBusy(f"another worker holds the lease of replay job {job_id}") from None

    missing = [consumer for consumer in job.consumers if consumer not in runtime.consumer_topics]
    if missing:
        _set_failed(runtime, job_id, f"consumer {missing[0]!r} is no longer configured", owner)
        return RunOutcome.FAILED

    started = time.monotonic()
    budget = _time_budget_seconds(runtime)

    def time_for_another_page() -> bool:
        if remaining_ms is not None and remaining_ms() < DEADLINE_MARGIN_MS:
            return False
        return time.monotonic() - started < budget

    try:
        while True:
            page = window(
                runtime.dynamodb,
                StoreTables.of(settings),
                job.window_filter,
                limit=page_size or PAGE_SIZE,
                after=job.after,
                max_bytes=None,
                now=clock(),
            )
            rounds = _publish_page(runtime, job, owner, page.events, publish, clock)
            failures = [r for r in rounds if r.failure is not None]
            if failures:
                return _after_failed_publish(runtime, job_id, owner, failures[0], clock)
            job = _complete_page(runtime, job, owner, page.events, page.last_examined, clock())
            if page.exhausted:
                _finish(runtime, job_id, owner, clock())
                return RunOutcome.DONE
            if not time_for_another_page():
                _release(runtime, job_id, owner, clock())
                enqueue_job(runtime, job_id)
                return RunOutcome.CONTINUED
    except LeaseLost:
        logger.warning(
            "replay job: lease lost to another worker; stopping", extra={"job_id": job_id}
        )
        return RunOutcome.CONTINUED
    except Exception:
        # Let the message come back at once to a worker that resumes from the checkpoint,
        # instead of waiting for the lease to expire.
        _release(runtime, job_id, owner, clock())
        raise


def _complete_page(
    runtime: Runtime,
    job: Job,
    owner: str,
    events: Sequence[StoredEvent],
    last_examined: str | None,
    now: datetime,
) -> Job:
    after = last_examined or job.after
    values: dict[str, Any] = {":matched": {"N": str(len(events))}, **_lease_values(runtime, now)}
    expression = "SET updated_at = :stamp, lease_until = :lease, attempts = :zero"
    values[":zero"] = {"N": "0"}
    if after is not None:
        expression += ", #after = :after, reached = :reached"
        values[":after"] = {"S": after}
        values[":reached"] = {"S": after.split("#", 1)[0]}
    item = _owned_update(
        runtime,
        job.job_id,
        owner,
        expression + " ADD matched :matched",
        values,
        {"#after": "after"} if after is not None else None,
    )
    return job_from_item(item)


def _finish(runtime: Runtime, job_id: str, owner: str, now: datetime) -> None:
    stamp = rfc3339(now)
    _owned_update(
        runtime,
        job_id,
        owner,
        "SET #status = :done, finished_at = :stamp, updated_at = :stamp "
        "REMOVE lease_owner, lease_until",
        {":done": {"S": DONE}, ":stamp": {"S": stamp}},
        {"#status": "status"},
    )


def _after_failed_publish(
    runtime: Runtime,
    job_id: str,
    owner: str,
    failure: _ConsumerRound,
    clock: Callable[[], datetime],
) -> RunOutcome:
    """Progress is recorded; retry the page later, or give up after repeated failures."""
    item = _owned_update(
        runtime,
        job_id,
        owner,
        "SET updated_at = :stamp ADD attempts :one",
        {":one": {"N": "1"}, ":stamp": {"S": rfc3339(clock())}},
    )
    attempts = _n(item, "attempts")
    if attempts >= MAX_PUBLISH_ATTEMPTS:
        _set_failed(
            runtime,
            job_id,
            f"publishing to consumer {failure.consumer!r} failed {attempts} times "
            f"(last error: {failure.failure})",
            owner,
        )
        return RunOutcome.FAILED
    logger.warning(
        "replay job: publish failed; retry scheduled",
        extra={
            "job_id": job_id,
            "consumer": failure.consumer,
            "error_code": failure.failure,
            "attempt": attempts,
        },
    )
    _release(runtime, job_id, owner, clock())
    delay = compute_backoff(attempts, base=1, cap=MAX_RETRY_DELAY_SECONDS, jitter=None)
    enqueue_job(runtime, job_id, delay_seconds=int(delay))
    return RunOutcome.RETRY_SCHEDULED

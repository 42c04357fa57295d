"""The ingest pipeline: one SQS batch from validation to acknowledgement.

`IngestBatch.run` reads as its stages (the way Chalice's `Deployer._deploy` does):

    1. validate, collapse in-batch duplicates; quarantine the invalid (alongside the rest)
    2. read the dedup records; mark the fresh events' arrival (one update per interaction,
       which reads its record back)
    3. plan per interaction (claims.py, pure) and claim (one conditional write each; a claim
       refused because the record changed is planned again from the record as it is now)
    4. publish to every consumer topic (concurrently)
    5. store the delivered events, then release what stays in flight (ledger.py); quarantine
       what a topic refused for good
    6. wait for a turn: events that wait for another invocation (an older event it delivers,
       its lease, a claim its marks refused) go through 2 to 5 again after a short pause,
       reading their records instead of marking them, for up to `RELAY_TURN_WAIT_MS`
    7. report: acknowledge or fail each record (report.py; handler.py answers Lambda)

The deadline is checked before each stage that starts work.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from time import sleep
from typing import Any

from chalicelib.aws import AwsFailure, compute_backoff
from chalicelib.errors import DependencyUnavailable
from chalicelib.formats import parse_rfc3339, rfc3339, utc_now
from chalicelib.ingest.claims import (
    OLDER_EVENT_RETRYING,
    ArrivalMark,
    Candidate,
    InteractionPlan,
    InteractionRecord,
    LeaseTerms,
    Publication,
    plan_interaction,
    settle_interaction,
)
from chalicelib.ingest.fanout import OutboundMessage, PublishResult, fan_out
from chalicelib.ingest.ledger import Ledger
from chalicelib.ingest.quarantine import publish_quarantine, undeliverable
from chalicelib.ingest.report import BatchOutcome, BatchReport
from chalicelib.model import (
    CanonicalEvent,
    DeliveredMessage,
    InvalidEvent,
    SqsRecord,
    delivered_message,
)
from chalicelib.providers.validation import validate_record
from chalicelib.runtime import Runtime
from chalicelib.store.layout import event_item, time_index_items
from chalicelib.telemetry import BatchMetrics, logger
from chalicelib.timing import (
    LONGEST_RECORD_LIFE_SECONDS,
    MAX_RECEIVE_COUNT,
    VISIBILITY_FACTOR,
    ingest_timeout_seconds,
)

# A refused claim is planned again from the record DynamoDB returned with the refusal: arrival
# marks of concurrent batches refuse claims without anyone holding the interaction, and a
# record failed for that would only come back to the same decision seconds later.
CLAIM_ROUNDS = 3
# Pauses between turns of events waiting for another invocation: 50 ms doubling up to 500 ms,
# jittered, so invocations waiting on one another do not poll in step.
TURN_PAUSE_BASE_SECONDS = 0.05
TURN_PAUSE_MAX_SECONDS = 0.5
# Waiting stops when nothing moved this long: no waiting event went, no record it waits on
# changed. A running invocation changes the record within moments (its claim, its marks, its
# release); a record unchanged for a second has nobody working on it (its holder crashed, or
# the event waited on failed and backs off in the queue).
TURN_STALL_SECONDS = 1.0


def stuck_claim_ms(stage: str) -> int:
    """Age at which a claim stops holding back its interaction: longer than its record can
    keep being retried (every receive up to the redrive limit timing out), so the record is
    in the DLQ by then. A shorter limit would drop the claim of a record still retrying, and
    its event would be claimed anew: delivered twice, `late` decided again."""
    return MAX_RECEIVE_COUNT * VISIBILITY_FACTOR * ingest_timeout_seconds(stage) * 1000


class Deadline:
    """Remaining time of the invocation, from the Lambda context (none in plain tests)."""

    def __init__(self, context: Any, margin_ms: int) -> None:
        self._context = context
        self._margin_ms = margin_ms

    def exhausted(self, reserve_ms: float = 0) -> bool:
        """Past the margin, or within `reserve_ms` of it."""
        if self._context is None or not hasattr(self._context, "get_remaining_time_in_millis"):
            return False
        remaining: int = self._context.get_remaining_time_in_millis()
        return remaining < self._margin_ms + reserve_ms


@dataclass
class Ledgered:
    """What the ledger said before claiming: stored events and the marked records."""

    groups: list[tuple[InteractionRecord, list[Candidate]]]  # per interaction to plan
    stored: dict[tuple[str, str], str]  # (interaction id, dedup key) -> payload fingerprint


@dataclass
class DeliveryRound:
    """What one round of stages 2 to 5 left: the events that wait for another invocation, with
    the reason, the interaction records' versions as the round read them, and its duration."""

    waiting: list[tuple[Candidate, str]] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def moved_since(self, earlier: DeliveryRound) -> bool:
        """An event went, or a record it waits on changed: the wait is not stalled."""
        return (len(self.waiting), self.versions) != (len(earlier.waiting), earlier.versions)


class IngestBatch:
    def __init__(self, runtime: Runtime, records: Sequence[SqsRecord], context: Any) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.records = records
        self.deadline = Deadline(context, self.settings.deadline_margin_ms)
        self.owner = getattr(context, "aws_request_id", None) or uuid.uuid4().hex
        self.ledger = Ledger(
            runtime.dynamodb, self.settings.names.ledger_table, self.settings.names.events_table
        )
        self.report = BatchReport(BatchMetrics())
        self.now = utc_now()
        self.now_ms = int(self.now.timestamp() * 1000)
        self.received_at = rfc3339(self.now)
        # Interaction records outlive every record that may still come back (timing.py).
        retention = max(self.settings.dedup_retention_days * 86400, LONGEST_RECORD_LIFE_SECONDS)
        self.record_expires_at = int(self.now.timestamp()) + retention

    def run(self) -> BatchOutcome:
        started = time.perf_counter()
        self.report.received(len(self.records))
        candidates, invalid = self._validate()
        quarantined = self.runtime.executor.submit(self._quarantine, invalid)
        try:
            self._deliver_in_turn(candidates)
        except DependencyUnavailable as error:
            logger.error("ledger unavailable; records retried", extra={"error": str(error)})
            self.report.retried([r for c in candidates for r in c.record_ids], "ledger")
        quarantined.result()
        return self.report.finish(len(self.records), (time.perf_counter() - started) * 1000)

    def _deliver_in_turn(self, candidates: list[Candidate]) -> None:
        """Deliver, then give the events that wait for another invocation their turn here.

        What they wait for (an older event, a lease, marks that refused a claim) belongs to an
        invocation running now, which is done within a second or so: waiting for it here costs
        a few reads, while a trip through the queue costs a backoff and one of the redrive
        limit's receives, and a chain of such trips on a shuffled stream can outlast them all.
        The last pause ends within `RELAY_TURN_WAIT_MS` and leaves the slowest round's time
        before the deadline's margin; what still waits then is retried through the queue, its
        arrival mark holding its place. An event waiting for one whose record is itself backing
        off in the queue (OLDER_EVENT_RETRYING) goes back to the queue at once: no pause here
        ends that wait.
        """
        last = self._deliver(candidates, mark=True)
        slowest_round_s = last.seconds
        for_the_queue = [w for w in last.waiting if w[1] == OLDER_EVENT_RETRYING]
        waited_s = moved_at_s = 0.0
        turn = 0
        while waiting := [w for w in last.waiting if w[1] != OLDER_EVENT_RETRYING]:
            pause_s = compute_backoff(
                turn, base=TURN_PAUSE_BASE_SECONDS, cap=TURN_PAUSE_MAX_SECONDS
            )
            if (
                (waited_s + pause_s) * 1000 > self.settings.turn_wait_ms
                or waited_s - moved_at_s >= TURN_STALL_SECONDS
                # The pause and a round as slow as the slowest so far must end before the
                # margin: a round cut off by the timeout is a crash window.
                or self.deadline.exhausted((pause_s + slowest_round_s) * 1000)
            ):
                break
            sleep(pause_s)
            waited_s, turn = waited_s + pause_s, turn + 1
            earlier = DeliveryRound(waiting, last.versions)
            last = self._deliver([candidate for candidate, _ in waiting], mark=False)
            slowest_round_s = max(slowest_round_s, last.seconds)
            if last.moved_since(earlier):
                moved_at_s = waited_s
            for_the_queue += [w for w in last.waiting if w[1] == OLDER_EVENT_RETRYING]
        self.report.waiting([*waiting, *for_the_queue])
        self.report.metrics.milliseconds("TurnWaitMs", [waited_s * 1000])

    def _deliver(self, candidates: list[Candidate], *, mark: bool) -> DeliveryRound:
        """Stages 2 to 5 for the valid events, as one round; each stage that starts work first
        checks the deadline. The first round marks the events' arrival, later rounds read
        their records."""
        started = time.perf_counter()
        this_round = DeliveryRound()
        if candidates and not self._out_of_time(candidates):
            ledgered = self._read_and_mark(candidates, mark=mark)
            this_round.versions = {r.interaction_id: r.version for r, _ in ledgered.groups}
            claimed = self._claim(ledgered, self._terms(), this_round)
            if claimed and not self._out_of_time(
                [p.candidate for c in claimed for p in c.publications]
            ):
                reached, refused = self._publish(claimed)
                self._settle(claimed, reached, refused, this_round)
        this_round.seconds = time.perf_counter() - started
        return this_round

    # 1. validation ---------------------------------------------------------------------
    def _validate(self) -> tuple[list[Candidate], list[tuple[SqsRecord, InvalidEvent]]]:
        invalid: list[tuple[SqsRecord, InvalidEvent]] = []
        by_key: dict[tuple[str, str], list[tuple[SqsRecord, CanonicalEvent]]] = defaultdict(list)
        ages = []
        for record in self.records:
            result = validate_record(record.body, self.settings)
            if isinstance(result, InvalidEvent):
                invalid.append((record, result))
                continue
            problem = undeliverable(result, self.received_at)
            if problem is not None:
                invalid.append((record, problem))
                continue
            by_key[(result.interaction_id, result.dedup_key)].append((record, result))
            ages.append(_age_ms(result.occurred_at, self.now))
        self.report.validated(sum(len(v) for v in by_key.values()), len(invalid), ages)
        candidates = []
        for group in by_key.values():
            primary = group[0][1]
            variants: dict[str, CanonicalEvent] = {}
            for _, other in group[1:]:
                if other.payload_sha256 != primary.payload_sha256:
                    self.report.conflict(other, primary)
                    variants.setdefault(other.payload_sha256, other)
            record_ids = tuple(r.message_id for r, _ in group)
            candidates.append(Candidate(primary, record_ids, tuple(variants.values())))
        return candidates, invalid

    def _quarantine(self, invalid: list[tuple[SqsRecord, InvalidEvent]]) -> None:
        publish_quarantine(
            self.runtime.sns, self.runtime.quarantine_topic, invalid, self.received_at, self.report
        )

    # 2. dedup records and arrival marks ------------------------------------------------
    def _read_and_mark(self, candidates: list[Candidate], *, mark: bool) -> Ledgered:
        """Mark the arrivals (or, once marked, read the records), then read which events are
        stored: in that order, because a holder stores its events before it releases them from
        its record. Read the other way round, an event stored and released in between would
        look neither stored nor in flight, and be claimed again (a second delivery)."""
        by_interaction: dict[str, list[Candidate]] = defaultdict(list)
        for candidate in candidates:
            by_interaction[candidate.event.interaction_id].append(candidate)
        records = (self._mark_arrivals if mark else self._read_records)(by_interaction)
        # Marking or reading failed: retried already.
        groups = [(records[i], group) for i, group in by_interaction.items() if i in records]
        stored: dict[tuple[str, str], str] = {}
        self._read_stored(groups, stored)
        return Ledgered(groups, stored)

    def _mark_arrivals(
        self, by_interaction: dict[str, list[Candidate]]
    ) -> dict[str, InteractionRecord]:
        """Mark the events' arrival on their interaction records, before anything is claimed
        (one update per interaction, concurrently), and return the records as they are after
        it. An interaction whose records could not be marked is retried as a whole: its events
        must not be claimed without holding their place. (A duplicate's mark is harmless: a
        stored event's mark holds nothing back, and the next claim drops it.)"""
        futures = {
            interaction_id: self.runtime.executor.submit(
                self.ledger.mark_arrivals,
                interaction_id,
                [ArrivalMark.of(c.event, self.now_ms) for c in group],
                self.record_expires_at,
            )
            for interaction_id, group in by_interaction.items()
        }
        records: dict[str, InteractionRecord] = {}
        for interaction_id, future in futures.items():
            try:
                records[interaction_id] = future.result()
            except DependencyUnavailable as error:
                logger.warning("arrival marks not written", extra={"error": str(error)})
                self.report.retried(
                    [r for c in by_interaction[interaction_id] for r in c.record_ids], "ledger"
                )
        self.report.metrics.count("ArrivalWrites", len(futures))
        return records

    def _read_records(
        self, by_interaction: dict[str, list[Candidate]]
    ) -> dict[str, InteractionRecord]:
        """The records of events marked already (a later turn): read, not marked again, since
        a mark changes the version and would refuse the claims of the invocation waited for."""
        try:
            return self.ledger.read_records(by_interaction)
        except DependencyUnavailable as error:
            logger.warning("interaction records not read", extra={"error": str(error)})
            self.report.retried(
                [r for group in by_interaction.values() for c in group for r in c.record_ids],
                "ledger",
            )
            return {}

    def _read_stored(
        self,
        groups: Iterable[tuple[InteractionRecord, list[Candidate]]],
        stored: dict[tuple[str, str], str],
    ) -> None:
        """Add to `stored` the events of these records (the candidates, their in-flight claims
        and arrival marks) stored by now; read after the records, and again whenever a record
        is newer than the last read (a stale answer would take a finished claim for an
        unfinished one, or a released event for a fresh one: a second delivery)."""
        keys = {
            (record.interaction_id, key)
            for record, group in groups
            for key in [*record.inflight, *record.marks, *(c.dedup_key for c in group)]
        }
        unknown = keys - stored.keys()
        if unknown:
            stored.update(self.ledger.read_stored(unknown))

    # 3. plan and claim -----------------------------------------------------------------
    def _terms(self) -> LeaseTerms:
        """The lease terms of a claim made now (a later turn claims later than the batch's
        start; its events' arrival stays the batch's own `received_at`)."""
        return LeaseTerms(
            owner=self.owner,
            now_ms=max(self.now_ms, int(utc_now().timestamp() * 1000)),
            lease_ms=self.settings.lease_seconds * 1000,
            stuck_ms=stuck_claim_ms(self.settings.stage),
            received_at=self.received_at,
            live_ms=ingest_timeout_seconds(self.settings.stage) * 1000,
        )

    def _claim(
        self, ledgered: Ledgered, terms: LeaseTerms, this_round: DeliveryRound
    ) -> list[InteractionPlan]:
        """Plan each interaction and claim what its plan publishes (one conditional write each,
        concurrently). A claim refused because the record changed (an arrival marked, another
        invocation's claim) is planned again from the record as DynamoDB returned it, up to
        CLAIM_ROUNDS times; then its records are retried (their marks hold their place)."""
        stored = ledgered.stored
        claimed: list[InteractionPlan] = []
        todo = {record.interaction_id: (record, group) for record, group in ledgered.groups}
        group_of = {record.interaction_id: group for record, group in ledgered.groups}
        for round_number in range(CLAIM_ROUNDS):
            plans = {
                interaction_id: (
                    record,
                    plan_interaction(
                        record,
                        group,
                        {k: v for (i, k), v in stored.items() if i == interaction_id},
                        terms,
                    ),
                )
                for interaction_id, (record, group) in todo.items()
            }
            ready = {i: rp for i, rp in plans.items() if rp[1].claimed is not None}
            # Decided once, on the round that is final for the interaction.
            for _, plan in plans.values():
                if plan.claimed is None:
                    self._decide(plan, this_round)
            if ready and self._out_of_time(
                [p.candidate for _, plan in ready.values() for p in plan.publications]
            ):
                for _, plan in ready.values():
                    self._decide(plan, this_round)
                return claimed
            futures = {
                interaction_id: self.runtime.executor.submit(
                    self.ledger.claim, record.version, plan.claimed, self.record_expires_at
                )
                for interaction_id, (record, plan) in ready.items()
                if plan.claimed is not None
            }
            todo = {}
            for interaction_id, future in futures.items():
                _, plan = ready[interaction_id]
                try:
                    refused = future.result()
                except DependencyUnavailable as error:
                    # The ledger failing is no turn to wait for: retried through the queue.
                    logger.warning("claim failed", extra={"error": str(error)})
                    self._decide(plan, this_round)
                    self.report.retried(
                        [r for p in plan.publications for r in p.candidate.record_ids], "ledger"
                    )
                    continue
                if refused is None:
                    self._decide(plan, this_round)
                    claimed.append(plan)
                elif refused.current is not None and round_number < CLAIM_ROUNDS - 1:
                    todo[interaction_id] = (refused.current, group_of[interaction_id])
                else:
                    self._decide(plan, this_round)
                    self.report.claim_refused()
                    this_round.waiting += [
                        (p.candidate, "claim_refused") for p in plan.publications
                    ]
            if not todo:
                break
            self._read_stored(todo.values(), stored)
        return claimed

    def _decide(self, plan: InteractionPlan, this_round: DeliveryRound) -> None:
        """Record a plan's decisions for what it does not claim: duplicates acknowledged,
        waiting events kept for their turn, with their reason."""
        for candidate, conflict in plan.duplicates:
            self.report.duplicate(candidate, conflict)
        this_round.waiting += [(c, plan.wait_reason(c)) for c in plan.waiting]
        for key in plan.abandoned:
            logger.warning(
                "stuck claim no longer blocks its interaction",
                extra={"interaction_id": plan.interaction_id, "dedup_key": key},
            )

    def _out_of_time(self, candidates: Sequence[Candidate]) -> bool:
        """Checked before each stage that starts work: past the margin, a real Lambda would be
        killed part-way, so the stage does not start and its records are retried. (Claimed but
        not published, the claims stay in flight: nothing reached a consumer, and the next
        attempt takes them over once the lease ends.)"""
        if not self.deadline.exhausted():
            return False
        self.report.retried([r for c in candidates for r in c.record_ids], "deadline")
        return True

    # 4. publish ------------------------------------------------------------------------
    def _publish(
        self, plans: list[InteractionPlan]
    ) -> tuple[dict[str, dict[str, set[str]]], dict[str, dict[str, str]]]:
        """Publish every claimed event to the consumers it has not reached; returns, per
        interaction, the consumers each dedup key reached and the ones that refused it for
        good. (Per interaction: dedup keys are scoped by interaction, a provider's event id
        may recur in another one, so one interaction's publish never settles another's.)"""
        publications: list[Publication] = [p for plan in plans for p in plan.publications]
        messages = {
            str(n): OutboundMessage.from_message(str(n), publication_message(p), p.claim.event_id)
            for n, p in enumerate(publications)
        }

        def messages_for(consumer: str) -> list[OutboundMessage]:
            return [messages[str(n)] for n, p in enumerate(publications) if p.may_reach(consumer)]

        reached: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        refused: dict[str, dict[str, str]] = defaultdict(dict)  # interaction -> key -> code
        results: dict[str, PublishResult] = {}
        try:
            results = fan_out(
                self.runtime.sns, self.runtime.consumer_topics, messages_for, self.runtime.executor
            )
        except AwsFailure as error:  # defensive: fan_out reports per entry
            logger.error("fan-out failed", extra={"error": type(error).__name__})
        for consumer, result in results.items():
            for key in result.published:
                event = publications[int(key)].candidate.event
                reached[event.interaction_id][event.dedup_key].add(consumer)
            for key, code in result.refused.items():
                event = publications[int(key)].candidate.event
                refused[event.interaction_id][event.dedup_key] = f"{consumer}: {code}"
            self.report.metrics.consumer(
                consumer,
                delivered=len(result.published),
                failed=len(result.failed),
                publish_ms=result.seconds * 1000,
            )
            if result.failed:
                logger.warning(
                    "publish failures",
                    extra={"consumer": consumer, "codes": sorted(set(result.failed.values()))},
                )
        return reached, refused

    # 5. store, release, quarantine what a topic refused ----------------------------------
    def _settle(
        self,
        plans: list[InteractionPlan],
        reached: dict[str, dict[str, set[str]]],
        refused: dict[str, dict[str, str]],
        this_round: DeliveryRound,
    ) -> None:
        events: list[tuple[str, dict[str, Any]]] = []
        releases: list[tuple[int, InteractionRecord]] = []  # (claimed version, settled record)
        stored: list[tuple[DeliveredMessage, str]] = []  # (message, dedup key) for the index
        done: list[Publication] = []
        pending: list[Publication] = []
        poison: list[tuple[Publication, str]] = []
        names = self.settings.names
        expires_at = self.record_expires_at
        for plan in plans:
            assert plan.claimed is not None
            settlement = settle_interaction(
                plan.claimed,
                plan.publications,
                reached[plan.interaction_id],
                self.settings.consumers,
                refused[plan.interaction_id],
            )
            if settlement.record_needs_writing:
                releases.append((plan.claimed.version, settlement.record))
            for publication in settlement.done:
                event = publication.candidate.event
                message = publication_message(publication)
                stored.append((message, event.dedup_key))
                item = event_item(
                    message,
                    dedup_key=event.dedup_key,
                    payload_sha256=event.payload_sha256,
                    retention_days=self.settings.store_retention_days,
                    now=self.now,
                )
                events.append((names.events_table, item))
            done += settlement.done
            pending += settlement.pending
            # At every consumer open to them, waiting at the others for an older event.
            this_round.waiting += [(p.candidate, OLDER_EVENT_RETRYING) for p in settlement.held]
            poison += [
                (p, refused[plan.interaction_id][p.candidate.dedup_key]) for p in settlement.refused
            ]
        # Index entries go first: an event item without its entry would be in no window for
        # good (its dedup record stops a retry from storing it again); the reverse is harmless.
        index = time_index_items(
            stored,
            shards=self.settings.time_index_shards,
            retention_days=self.settings.store_retention_days,
            now=self.now,
        )
        self.ledger.store([(names.time_index_table, item) for item in index], events)
        # Released once the events are stored; concurrently, one conditional write each.
        released = [
            self.runtime.executor.submit(
                self.ledger.release, self.owner, version, record, expires_at
            )
            for version, record in releases
        ]
        for future in released:
            try:
                future.result()
            except DependencyUnavailable as error:
                # The delivered events are stored (acknowledged below); what stays in flight
                # is retried anyway, and taken over with the lease if this record stays.
                logger.error("interaction record not released", extra={"error": str(error)})
        for publication in done:
            self.report.delivered(publication)
        for publication in pending:
            self.report.publish_failed(publication)
        # Refused for good by a topic: poison for its own records, never failing the batch.
        by_id = {record.message_id: record for record in self.records}
        self._quarantine(
            [
                (by_id[message_id], InvalidEvent("invalid", {"_publish": [f"refused by {why}"]}))
                for publication, why in poison
                for message_id in publication.candidate.record_ids
            ]
        )


def publication_message(publication: Publication) -> DeliveredMessage:
    """The delivered message of a claimed event, under the event id it was claimed with.

    A provider re-send (same provider event id, new envelope id) may be the record that
    retries a partly published event; its message keeps the first id, so every consumer and
    every repeat sees one stable `event_id` (consumers and FIFO topics dedupe on it).
    """
    claim = publication.claim
    message = delivered_message(
        publication.candidate.event, received_at=claim.received_at, late=claim.late
    )
    message["event_id"] = claim.event_id
    return message


def _age_ms(occurred_at: str, now: datetime) -> float:
    occurred = parse_rfc3339(occurred_at)
    return max(0.0, (now - occurred).total_seconds() * 1000)

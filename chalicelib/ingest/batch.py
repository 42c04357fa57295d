"""The ingest pipeline: one SQS batch from validation to acknowledgement.

    validate -> quarantine invalid | collapse in-batch duplicates -> read dedup records
    -> mark the fresh events' arrival (one update per interaction, reading its record back)
    -> plan per interaction (claims.py, pure) -> claim (one conditional write each; a claim
       refused because the record changed is planned again from the record as it is now)
    -> publish to every consumer topic (concurrently) -> store, then release what stays in
       flight (ledger.py) -> quarantine what a topic refused for good
    -> acknowledge, or fail (handler.py backs failures off and answers Lambda)

A record is acknowledged only when its event reached every consumer, was quarantined, or
is a confirmed duplicate of a delivered event. Anything else is a batch item failure.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import DependencyUnavailable
from chalicelib.formats import parse_rfc3339, rfc3339, sha256_hex, utc_now
from chalicelib.ingest.claims import (
    ArrivalMark,
    Candidate,
    InteractionPlan,
    InteractionRecord,
    LeaseTerms,
    Publication,
    plan_interaction,
    settle_interaction,
)
from chalicelib.ingest.fanout import OutboundMessage, fan_out, publish_ordered
from chalicelib.ingest.ledger import ClaimRefused, Ledger
from chalicelib.model import (
    QUARANTINE_RAW_LIMIT,
    SNS_MAX_MESSAGE_BYTES,
    CanonicalEvent,
    DeliveredMessage,
    InvalidEvent,
    delivered_message,
    message_attributes,
    sns_message_size,
)
from chalicelib.providers.validation import validate_record
from chalicelib.runtime import Runtime
from chalicelib.store.layout import event_item, time_index_items
from chalicelib.telemetry import BatchMetrics, audit, logger
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


def stuck_claim_ms(stage: str) -> int:
    """Age at which a claim stops holding back its interaction: longer than its record can
    keep being retried (every receive up to the redrive limit timing out), so the record is
    in the DLQ by then. A shorter limit would drop the claim of a record still retrying, and
    its event would be claimed anew: delivered twice, `late` decided again."""
    return MAX_RECEIVE_COUNT * VISIBILITY_FACTOR * ingest_timeout_seconds(stage) * 1000


@dataclass(frozen=True)
class SqsRecord:
    message_id: str
    body: str
    receipt_handle: str
    receive_count: int
    source_arn: str

    @classmethod
    def from_lambda(cls, raw: dict[str, Any]) -> SqsRecord:
        return cls(
            message_id=raw["messageId"],
            body=raw.get("body", ""),
            receipt_handle=raw.get("receiptHandle", ""),
            receive_count=int(raw.get("attributes", {}).get("ApproximateReceiveCount", "1")),
            source_arn=raw.get("eventSourceARN", ""),
        )


@dataclass
class BatchOutcome:
    acknowledged: dict[str, str] = field(default_factory=dict)  # message id -> decision
    failed: dict[str, str] = field(default_factory=dict)  # message id -> reason

    def ack(self, message_id: str, decision: str) -> None:
        self.acknowledged[message_id] = decision

    def fail(self, message_ids: Sequence[str], reason: str) -> None:
        for message_id in message_ids:
            self.failed[message_id] = reason


class Deadline:
    """Remaining time of the invocation, from the Lambda context (none in plain tests)."""

    def __init__(self, context: Any, margin_ms: int) -> None:
        self._context = context
        self._margin_ms = margin_ms

    def exhausted(self) -> bool:
        if self._context is None or not hasattr(self._context, "get_remaining_time_in_millis"):
            return False
        remaining: int = self._context.get_remaining_time_in_millis()
        return remaining < self._margin_ms


def quarantine_message(record: SqsRecord, invalid: InvalidEvent, received_at: str) -> str:
    raw = record.body.encode("utf-8", errors="surrogatepass")
    return json.dumps(
        {
            "reason": invalid.reason,
            "errors": invalid.errors,
            "raw": raw[:QUARANTINE_RAW_LIMIT].decode("utf-8", errors="replace"),
            "raw_bytes": len(raw),
            "raw_sha256": sha256_hex(raw),
            "message_id": record.message_id,
            "received_at": received_at,
        },
        ensure_ascii=False,
    )


def undeliverable(event: CanonicalEvent, received_at: str) -> InvalidEvent | None:
    """`too_large` when the delivered message would exceed SNS's limit (key limits are the
    validation's; what SNS still refuses for good is poison once published, see `_settle`)."""
    # Sized as the larger of the two messages it may become: `false` is longer than `true`.
    message = delivered_message(event, received_at=received_at, late=False)
    body = OutboundMessage.from_message("size", message, event.event_id).body
    size = sns_message_size(body, message_attributes(message))
    if size <= SNS_MAX_MESSAGE_BYTES:
        return None
    limit = SNS_MAX_MESSAGE_BYTES
    return InvalidEvent(
        "too_large", {"_message": [f"delivered message is {size} bytes; SNS accepts {limit}"]}
    )


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
        self.metrics = BatchMetrics()
        self.outcome = BatchOutcome()
        self.now = utc_now()
        self.received_at = rfc3339(self.now)
        # Interaction records outlive every record that may still come back (timing.py).
        retention = max(self.settings.dedup_retention_days * 86400, LONGEST_RECORD_LIFE_SECONDS)
        self.record_expires_at = int(self.now.timestamp()) + retention

    def run(self) -> BatchOutcome:
        started = time.perf_counter()
        self.metrics.count("Received", len(self.records))
        self.metrics.count("BatchSize", len(self.records))
        candidates, invalid = self._validate()
        quarantine = self.runtime.executor.submit(self._quarantine, invalid)
        try:
            self._deliver(candidates)
        except DependencyUnavailable as error:
            logger.error("ledger unavailable; records retried", extra={"error": str(error)})
            pending = [r for c in candidates for r in c.record_ids if r not in self.outcome.failed]
            self.outcome.fail([r for r in pending if r not in self.outcome.acknowledged], "ledger")
        quarantine.result()
        elapsed_ms = (time.perf_counter() - started) * 1000
        if self.records:
            self.metrics.milliseconds("RecordMs", [elapsed_ms / len(self.records)])
        self.metrics.count("Retried", len(self.outcome.failed))
        # Per reason, so an operator tells ordering waits and lease contention from errors.
        for reason, retried in Counter(self.outcome.failed.values()).items():
            self.metrics.count(f"Retried:{reason}", retried)
        self.metrics.flush()
        return self.outcome

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
        self.metrics.count("Valid", sum(len(v) for v in by_key.values()))
        self.metrics.count("Invalid", len(invalid))
        self.metrics.milliseconds("EventAgeMs", ages)
        candidates = []
        for group in by_key.values():
            primary = group[0][1]
            variants: dict[str, CanonicalEvent] = {}
            for _, other in group[1:]:
                if other.payload_sha256 != primary.payload_sha256:
                    self.metrics.count("Conflicts")
                    audit("conflict", **_ids(other), first_event_id=primary.event_id)
                    variants.setdefault(other.payload_sha256, other)
            record_ids = tuple(r.message_id for r, _ in group)
            candidates.append(Candidate(primary, record_ids, tuple(variants.values())))
        return candidates, invalid

    def _quarantine(self, invalid: list[tuple[SqsRecord, InvalidEvent]]) -> None:
        if not invalid:
            return
        messages = [
            OutboundMessage(
                key=record.message_id,
                group=record.message_id,
                body=quarantine_message(record, problem, self.received_at),
                attributes={"reason": {"DataType": "String", "StringValue": problem.reason}},
                dedup_id=record.message_id,
            )
            for record, problem in invalid
        ]
        # Published right here, not through fan_out: this already runs as a task of the shared
        # pool, and waiting in one task for another deadlocks a pool that batches fill up.
        result = publish_ordered(self.runtime.sns, self.runtime.quarantine_topic, messages)
        for record, problem in invalid:
            if record.message_id in result.published:
                self.outcome.ack(record.message_id, "quarantined")
                self.metrics.count("Quarantined")
                self.metrics.count(f"Quarantined:{problem.reason}")
                for field_name in problem.errors:
                    self.metrics.count(f"InvalidField:{field_name}")
                audit(
                    "quarantined",
                    message_id=record.message_id,
                    reason=problem.reason,
                    fields=sorted(problem.errors),
                )
            else:
                self.outcome.fail([record.message_id], "quarantine_publish_failed")

    # 2. dedup, ordering, fan-out -------------------------------------------------------
    def _deliver(self, candidates: list[Candidate]) -> None:
        if not candidates:
            return
        if self.deadline.exhausted():
            self.outcome.fail([r for c in candidates for r in c.record_ids], "deadline")
            return
        by_interaction: dict[str, list[Candidate]] = defaultdict(list)
        for candidate in candidates:
            by_interaction[candidate.event.interaction_id].append(candidate)
        read = {(c.event.interaction_id, c.dedup_key) for c in candidates}
        stored = self.ledger.read_stored(read)
        unmarked = {
            interaction_id
            for interaction_id, group in by_interaction.items()
            if all((interaction_id, c.dedup_key) in stored for c in group)
        }
        records = self._mark_arrivals(by_interaction, stored)
        self._look_up_stored(records.values(), stored, read)
        terms = LeaseTerms(
            owner=self.owner,
            now_ms=int(self.now.timestamp() * 1000),
            lease_ms=self.settings.lease_seconds * 1000,
            stuck_ms=stuck_claim_ms(self.settings.stage),
            received_at=self.received_at,
        )
        # Only duplicates: no record needed. Marking failed: retried already.
        groups = [
            (records.get(interaction_id) or InteractionRecord(interaction_id), group)
            for interaction_id, group in by_interaction.items()
            if interaction_id in records or interaction_id in unmarked
        ]
        claimed = self._claim(groups, stored, read, terms)
        self._publish_and_settle(claimed)

    def _look_up_stored(
        self,
        records: Iterable[InteractionRecord],
        stored: dict[tuple[str, str], str],
        read: set[tuple[str, str]],
    ) -> None:
        """Add to `stored` the in-flight claims and arrival marks of these records that were
        stored since `stored` was read (a crash between storing and releasing, a holder that
        finished, a mark of a copy claimed in the meantime): a stale answer would take a
        finished claim for an unfinished one, and resume it (a second delivery)."""
        unknown = {
            (record.interaction_id, key)
            for record in records
            for key in [*record.inflight, *record.marks]
        } - read
        if unknown:
            stored.update(self.ledger.read_stored(unknown))
            read |= unknown

    def _mark_arrivals(
        self, by_interaction: dict[str, list[Candidate]], stored: dict[tuple[str, str], str]
    ) -> dict[str, InteractionRecord]:
        """Mark the fresh events' arrival on their interaction records, before anything is
        claimed (one update per interaction, concurrently), and return the records as they are
        after it. An interaction whose records could not be marked is retried as a whole: its
        events must not be claimed without holding their place."""
        fresh = {
            interaction_id: [c for c in group if (interaction_id, c.dedup_key) not in stored]
            for interaction_id, group in by_interaction.items()
        }
        futures = {
            interaction_id: self.runtime.executor.submit(
                self.ledger.mark_arrivals,
                interaction_id,
                [ArrivalMark.of(c.event, int(self.now.timestamp() * 1000)) for c in group],
                self.record_expires_at,
            )
            for interaction_id, group in fresh.items()
            if group
        }
        records: dict[str, InteractionRecord] = {}
        for interaction_id, future in futures.items():
            try:
                records[interaction_id] = future.result()
            except DependencyUnavailable as error:
                logger.warning("arrival marks not written", extra={"error": str(error)})
                self.outcome.fail(
                    [r for c in by_interaction[interaction_id] for r in c.record_ids], "ledger"
                )
        self.metrics.count("ArrivalWrites", len(futures))
        return records

    def _claim(
        self,
        groups: list[tuple[InteractionRecord, list[Candidate]]],
        stored: dict[tuple[str, str], str],
        read: set[tuple[str, str]],
        terms: LeaseTerms,
    ) -> list[InteractionPlan]:
        """Plan each interaction and claim what its plan publishes (one conditional write each,
        concurrently). A claim refused because the record changed (an arrival marked, another
        invocation's claim) is planned again from the record as DynamoDB returned it, up to
        CLAIM_ROUNDS times; then its records are retried (their marks hold their place)."""
        claimed: list[InteractionPlan] = []
        todo = {record.interaction_id: (record, group) for record, group in groups}
        group_of = {record.interaction_id: group for record, group in groups}
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
            for _, plan in plans.values():
                if plan.claimed is None:
                    self._decide(plan)
            if ready and self._out_of_time(
                [p for _, plan in ready.values() for p in plan.publications]
            ):
                for _, plan in ready.values():
                    self._decide(plan, claimed=False)
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
                    logger.warning("claim failed", extra={"error": str(error)})
                    refused = ClaimRefused(interaction_id, None)
                if refused is None:
                    self._decide(plan)
                    claimed.append(plan)
                elif refused.current is not None and round_number < CLAIM_ROUNDS - 1:
                    todo[interaction_id] = (refused.current, group_of[interaction_id])
                else:
                    self._decide(plan, claimed=False)
                    self.metrics.count("ClaimRefused")
            if not todo:
                break
            self._look_up_stored((record for record, _ in todo.values()), stored, read)
        return claimed

    def _decide(self, plan: InteractionPlan, claimed: bool = True) -> None:
        """Record a plan's final decisions: duplicates acknowledged, waiting records failed
        for their reason; publications not claimed (refused, out of time) failed."""
        for candidate, conflict in plan.duplicates:
            self._ack_all(candidate, "duplicate")
            if conflict:
                self.metrics.count("Conflicts")
            audit("duplicate", **_ids(candidate.event), conflict=conflict)
        for candidate in plan.waiting:
            self.outcome.fail(candidate.record_ids, plan.wait_reason(candidate))
        if plan.waiting:
            self.metrics.count("Waiting", len(plan.waiting))
        for key in plan.abandoned:
            logger.warning(
                "stuck claim no longer blocks its interaction",
                extra={"interaction_id": plan.interaction_id, "dedup_key": key},
            )
        if not claimed:
            for publication in plan.publications:
                if publication.candidate.record_ids[0] not in self.outcome.failed:
                    self.outcome.fail(publication.candidate.record_ids, "claim_refused")

    def _out_of_time(self, publications: Sequence[Publication]) -> bool:
        """Checked before each stage that starts work: past the margin, a real Lambda would be
        killed part-way, so the stage does not start and its records are retried."""
        if not self.deadline.exhausted():
            return False
        for publication in publications:
            self.outcome.fail(publication.candidate.record_ids, "deadline")
        return True

    def _publish_and_settle(self, plans: list[InteractionPlan]) -> None:
        """Publish, then settle (what a topic refused for good is quarantined there)."""
        if not plans:
            return
        publications: list[Publication] = [p for plan in plans for p in plan.publications]
        # Claimed but not published: the claims stay in flight (nothing reached a consumer)
        # and the next attempt takes them over once the lease ends.
        if self._out_of_time(publications):
            return
        messages = {
            str(n): OutboundMessage.from_message(str(n), publication_message(p), p.claim.event_id)
            for n, p in enumerate(publications)
        }

        def messages_for(consumer: str) -> list[OutboundMessage]:
            return [
                messages[str(n)]
                for n, p in enumerate(publications)
                if consumer not in p.claim.delivered
            ]

        # Per interaction: dedup keys are scoped by interaction (a provider's event id may
        # recur in another one), so one interaction's publish never settles another's.
        reached: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        refused: dict[str, dict[str, str]] = defaultdict(dict)  # interaction -> key -> code
        try:
            results = fan_out(
                self.runtime.sns, self.runtime.consumer_topics, messages_for, self.runtime.executor
            )
        except (ClientError, BotoCoreError) as error:  # defensive: fan_out reports per entry
            logger.error("fan-out failed", extra={"error": type(error).__name__})
            results = {}
        for consumer, result in results.items():
            for key in result.published:
                event = publications[int(key)].candidate.event
                reached[event.interaction_id][event.dedup_key].add(consumer)
            for key, code in result.refused.items():
                event = publications[int(key)].candidate.event
                refused[event.interaction_id][event.dedup_key] = f"{consumer}: {code}"
            self.metrics.consumer(
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
        self._settle(plans, reached, refused)

    def _settle(
        self,
        plans: list[InteractionPlan],
        reached: dict[str, dict[str, set[str]]],
        refused: dict[str, dict[str, str]],
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
            self._ack_all(publication.candidate, "delivered", primary_decision="delivered")
            if publication.claim.late:
                self.metrics.count("Late")
            audit("delivered", **_ids(publication.candidate.event), late=publication.claim.late)
        for publication in pending:
            self.outcome.fail(publication.candidate.record_ids, "publish_failed")
            audit(
                "failed",
                **_ids(publication.candidate.event),
                reason="publish_failed",
                delivered_to=sorted(publication.claim.delivered),
            )
        # Refused for good by a topic: poison for its own records, never failing the batch.
        by_id = {record.message_id: record for record in self.records}
        self._quarantine(
            [
                (by_id[message_id], InvalidEvent("invalid", {"_publish": [f"refused by {why}"]}))
                for publication, why in poison
                for message_id in publication.candidate.record_ids
            ]
        )

    def _ack_all(
        self, candidate: Candidate, decision: str, primary_decision: str | None = None
    ) -> None:
        first, *rest = candidate.record_ids
        self.outcome.ack(first, primary_decision or decision)
        self.metrics.count("Delivered" if primary_decision else "Duplicates")
        for message_id in rest:
            self.outcome.ack(message_id, "duplicate")
            self.metrics.count("Duplicates")


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


def _ids(event: CanonicalEvent) -> dict[str, str]:
    return {
        "event_id": event.event_id,
        "interaction_id": event.interaction_id,
        "dedup_key": event.dedup_key,
    }


def _age_ms(occurred_at: str, now: datetime) -> float:
    occurred = parse_rfc3339(occurred_at)
    return max(0.0, (now - occurred).total_seconds() * 1000)

"""What one batch decided for each of its records: one recorder per decision.

Each method acknowledges or fails the records of one decision, counts its metric and writes its
audit line, together (the way Powertools' batch utility keeps one recorder per outcome), so a
decision can never be counted without being acknowledged, or the other way round. A record is
acknowledged only when its event reached every consumer, was quarantined, or is a confirmed
duplicate of a delivered event; anything else is a failure that SQS retries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from chalicelib.ingest.claims import Candidate, Publication
from chalicelib.model import CanonicalEvent, InvalidEvent
from chalicelib.telemetry import BatchMetrics, audit


@dataclass
class BatchOutcome:
    acknowledged: dict[str, str] = field(default_factory=dict)  # message id -> decision
    failed: dict[str, str] = field(default_factory=dict)  # message id -> reason

    def ack(self, message_id: str, decision: str) -> None:
        self.acknowledged[message_id] = decision

    def fail(self, message_ids: Sequence[str], reason: str) -> None:
        for message_id in message_ids:
            self.failed[message_id] = reason


def event_ids(event: CanonicalEvent) -> dict[str, str]:
    return {
        "event_id": event.event_id,
        "interaction_id": event.interaction_id,
        "dedup_key": event.dedup_key,
    }


class BatchReport:
    def __init__(self, metrics: BatchMetrics) -> None:
        self.metrics = metrics
        self.outcome = BatchOutcome()

    def received(self, count: int) -> None:
        self.metrics.count("Received", count)
        self.metrics.count("BatchSize", count)

    def validated(self, valid: int, invalid: int, ages_ms: Sequence[float]) -> None:
        self.metrics.count("Valid", valid)
        self.metrics.count("Invalid", invalid)
        self.metrics.milliseconds("EventAgeMs", list(ages_ms))

    def conflict(self, event: CanonicalEvent, first: CanonicalEvent) -> None:
        """A batch carried one event twice with two payloads: the first one is kept."""
        self.metrics.count("Conflicts")
        audit("conflict", **event_ids(event), first_event_id=first.event_id)

    def quarantined(self, message_id: str, problem: InvalidEvent) -> None:
        self.outcome.ack(message_id, "quarantined")
        self.metrics.count("Quarantined")
        self.metrics.count(f"Quarantined:{problem.reason}")
        for field_name in problem.errors:
            self.metrics.count(f"InvalidField:{field_name}")
        audit(
            "quarantined",
            message_id=message_id,
            reason=problem.reason,
            fields=sorted(problem.errors),
        )

    def duplicate(self, candidate: Candidate, conflict: bool) -> None:
        """Already delivered (and stored): every record of it is acknowledged."""
        for message_id in candidate.record_ids:
            self.outcome.ack(message_id, "duplicate")
            self.metrics.count("Duplicates")
        if conflict:
            self.metrics.count("Conflicts")
        audit("duplicate", **event_ids(candidate.event), conflict=conflict)

    def delivered(self, publication: Publication) -> None:
        """Reached every consumer and stored: its first record is the delivery, any other
        record of it in the batch a duplicate."""
        first, *rest = publication.candidate.record_ids
        self.outcome.ack(first, "delivered")
        self.metrics.count("Delivered")
        for message_id in rest:
            self.outcome.ack(message_id, "duplicate")
            self.metrics.count("Duplicates")
        late = publication.claim.late
        if late:
            self.metrics.count("Late")
        audit("delivered", **event_ids(publication.candidate.event), late=late)

    def publish_failed(self, publication: Publication) -> None:
        """Some consumer still misses it: it stays in flight and its records are retried."""
        self.outcome.fail(publication.candidate.record_ids, "publish_failed")
        audit(
            "failed",
            **event_ids(publication.candidate.event),
            reason="publish_failed",
            delivered_to=sorted(publication.claim.delivered),
        )

    def waiting(self, waiting: Sequence[tuple[Candidate, str]]) -> None:
        """Still not claimable when the batch stopped waiting for its turn (an older event
        pending, the interaction busy, a conflicting re-send in flight, claims refused):
        retried, each for its reason, its arrival mark holding its place."""
        for candidate, reason in waiting:
            self.outcome.fail(candidate.record_ids, reason)
        if waiting:
            self.metrics.count("Waiting", len(waiting))

    def claim_refused(self) -> None:
        """A claim refused CLAIM_ROUNDS times (the record kept changing): its events wait."""
        self.metrics.count("ClaimRefused")

    def retried(self, message_ids: Sequence[str], reason: str) -> None:
        """Failed for a reason outside the records (out of time, a dependency down), unless
        already decided."""
        undecided = [
            m
            for m in message_ids
            if m not in self.outcome.failed and m not in self.outcome.acknowledged
        ]
        self.outcome.fail(undecided, reason)

    def finish(self, records: int, elapsed_ms: float) -> BatchOutcome:
        if records:
            self.metrics.milliseconds("RecordMs", [elapsed_ms / records])
        self.metrics.count("Retried", len(self.outcome.failed))
        # Per reason, so an operator tells ordering waits and lease contention from errors.
        for reason, retried in Counter(self.outcome.failed.values()).items():
            self.metrics.count(f"Retried:{reason}", retried)
        self.metrics.flush()
        return self.outcome

"""Dedup and ordering decisions for one interaction: pure functions over plain records.

Record lifecycle of an event (the idea of Powertools' idempotency records, per interaction):

    (absent) --claim--> in flight (in the interaction record, with the consumers reached)
             --every consumer reached--> stored (the events table item = the dedup record)

The interaction record (ledger.py persists it) holds the lease, the high-water mark and the
in-flight claims; one conditional write of it claims all of a batch's events of that
interaction and takes the lease at once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from chalicelib.ingest.ordering import HighWaterMark, precedes, sort_interaction
from chalicelib.model import CanonicalEvent


@dataclass(frozen=True)
class Candidate:
    """One distinct event of a batch, with every SQS record that carried it."""

    event: CanonicalEvent
    record_ids: tuple[str, ...]

    @property
    def dedup_key(self) -> str:
        return self.event.dedup_key


@dataclass(frozen=True)
class InflightClaim:
    """A claimed event not yet at every consumer. `late` is decided once, at claim."""

    dedup_key: str
    event_id: str
    sequence: int | None
    occurred_at: str
    late: bool
    received_at: str
    claimed_at_ms: int
    delivered: frozenset[str] = frozenset()
    order_rank: int | None = None  # the event's tie-breaker rank (ordering.tie_breaker)


@dataclass(frozen=True)
class InteractionRecord:
    interaction_id: str
    version: int = 0  # 0: no record yet
    lease_owner: str | None = None
    lease_until_ms: int = 0
    hwm: HighWaterMark = field(default_factory=HighWaterMark)
    inflight: Mapping[str, InflightClaim] = field(default_factory=dict)

    def leased_by_other(self, owner: str, now_ms: int) -> bool:
        return (
            self.lease_owner is not None
            and self.lease_owner != owner
            and self.lease_until_ms > now_ms
        )


@dataclass(frozen=True)
class Publication:
    candidate: Candidate
    claim: InflightClaim


@dataclass(frozen=True)
class InteractionPlan:
    interaction_id: str
    duplicates: tuple[tuple[Candidate, bool], ...] = ()  # (candidate, payload conflicts)
    waiting: tuple[Candidate, ...] = ()  # retried later: lease busy or an older event pending
    wait_reason: str | None = None
    publications: tuple[Publication, ...] = ()  # in order-key order
    claimed: InteractionRecord | None = None  # the record to write to claim them
    abandoned: tuple[str, ...] = ()  # stuck claims no longer blocking (dedup keys)


@dataclass(frozen=True)
class LeaseTerms:
    owner: str
    now_ms: int
    lease_ms: int
    stuck_ms: int  # a claim older than this no longer blocks (its record went to the DLQ)
    received_at: str


def plan_interaction(
    record: InteractionRecord,
    candidates: Sequence[Candidate],
    stored: Mapping[str, str],
    terms: LeaseTerms,
) -> InteractionPlan:
    """Decide what happens to one interaction's candidates.

    `stored` maps dedup keys already delivered (events table) to their payload fingerprint.
    """
    duplicates = tuple(
        (c, stored[c.dedup_key] != c.event.payload_sha256)
        for c in candidates
        if c.dedup_key in stored
    )
    fresh = [c for c in candidates if c.dedup_key not in stored]
    plan = InteractionPlan(record.interaction_id, duplicates=duplicates)
    if not fresh:
        return plan
    # A holder whose every claim is stored has finished: it releases a lease only when
    # something stays in flight (that saves a write per interaction and batch).
    holder_busy = any(key not in stored for key in record.inflight)
    if holder_busy and record.leased_by_other(terms.owner, terms.now_ms):
        return replace(plan, waiting=tuple(fresh), wait_reason="interaction_busy")

    in_batch = {c.dedup_key for c in fresh}
    inflight: dict[str, InflightClaim] = {}
    abandoned: list[str] = []
    pending: list[InflightClaim] = []  # claimed earlier, not in this batch, not at every consumer
    for key, claim in record.inflight.items():
        if key in stored:
            continue  # delivered; the crash came after storing it, before the record
        if key in in_batch:
            inflight[key] = claim
        elif terms.now_ms - claim.claimed_at_ms >= terms.stuck_ms:
            abandoned.append(key)
        else:
            inflight[key] = claim
            pending.append(claim)
    # A pending event holds back the newer ones (they would overtake it) and nothing else: an
    # older fresh event is late anyway, and an older claimed one is due before it. Holding
    # back more would deadlock two pending events whose records SQS returns in separate batches.
    waiting = tuple(c for c in fresh if any(precedes(p, c.event) for p in pending))
    ready = [c for c in fresh if c not in waiting]
    if waiting:
        plan = replace(plan, waiting=waiting, wait_reason="older_event_pending")
    if not ready:
        return plan

    hwm = record.hwm
    publications = []
    for candidate in sort_interaction(ready, event_of=lambda c: c.event):
        claim = inflight.get(candidate.dedup_key)
        if claim is None:
            event = candidate.event
            claim = InflightClaim(
                dedup_key=candidate.dedup_key,
                event_id=event.event_id,
                sequence=event.sequence,
                occurred_at=event.occurred_at,
                late=hwm.is_late(event),
                received_at=terms.received_at,
                claimed_at_ms=terms.now_ms,
                order_rank=event.order_rank,
            )
            hwm = hwm.advance(event)
            inflight[candidate.dedup_key] = claim
        publications.append(Publication(candidate, claim))
    claimed = InteractionRecord(
        interaction_id=record.interaction_id,
        version=record.version + 1,
        lease_owner=terms.owner,
        lease_until_ms=terms.now_ms + terms.lease_ms,
        hwm=hwm,
        inflight=inflight,
    )
    return replace(
        plan, publications=tuple(publications), claimed=claimed, abandoned=tuple(abandoned)
    )


@dataclass(frozen=True)
class Settlement:
    done: tuple[Publication, ...]  # reached every consumer: store, acknowledge
    pending: tuple[Publication, ...]  # some consumer missing: stays in flight, retried
    record: InteractionRecord  # lease released

    @property
    def record_needs_writing(self) -> bool:
        """Only when something stays in flight: once every claim is stored, readers know
        the holder is done (plan_interaction), so the claimed record can stay as it is."""
        return bool(self.record.inflight)


def settle_interaction(
    claimed: InteractionRecord,
    publications: Sequence[Publication],
    reached: Mapping[str, Collection[str]],
    consumers: Collection[str],
) -> Settlement:
    """After publishing: `reached` maps dedup keys to the consumers this attempt reached."""
    inflight = dict(claimed.inflight)
    done, pending = [], []
    for publication in publications:
        key = publication.candidate.dedup_key
        delivered = publication.claim.delivered | frozenset(reached.get(key, ()))
        if delivered >= frozenset(consumers):
            inflight.pop(key, None)
            done.append(publication)
        else:
            claim = replace(publication.claim, delivered=delivered)
            inflight[key] = claim
            pending.append(Publication(publication.candidate, claim))
    record = replace(
        claimed,
        version=claimed.version + 1,
        lease_owner=None,
        lease_until_ms=0,
        inflight=inflight,
    )
    return Settlement(tuple(done), tuple(pending), record)

"""Dedup and ordering decisions for one interaction: pure functions over plain records.

Record lifecycle of an event (the idea of Powertools' idempotency records, per interaction):

    (absent) --claim--> in flight (in the interaction record, with the consumers reached)
             --every consumer reached--> stored (the events table item = the dedup record)

The interaction record (ledger.py persists it) holds the lease, the high-water mark, the
in-flight claims and the arrival marks. Every batch first marks the arrival of its fresh events
on the record (one unconditional update, without the lease, that also reads the record back),
then one conditional write of it claims what may go now and takes the lease. An event's place
is its arrival, not its claim: a newer event claimed by a concurrent batch must wait for an
older one that arrived before that claim (FIFO-like), and the arrival mark is what tells it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from chalicelib.formats import rfc3339
from chalicelib.ingest.ordering import HighWaterMark, by_time, precedes, sort_interaction
from chalicelib.model import CanonicalEvent


@dataclass(frozen=True)
class Candidate:
    """One distinct event of a batch, with every SQS record that carried it.

    `variants` are the other payloads the batch carried under the same dedup key (a
    conflicting re-send); the plan may pick one of them to keep an in-flight claim's payload.
    """

    event: CanonicalEvent
    record_ids: tuple[str, ...]
    variants: tuple[CanonicalEvent, ...] = ()

    @property
    def dedup_key(self) -> str:
        return self.event.dedup_key

    def carrying(self, payload_sha256: str | None) -> Candidate | None:
        """This candidate with the payload of that fingerprint, if the batch has it; a claim
        without a fingerprint (written before claims had one) takes any."""
        if payload_sha256 is None or self.event.payload_sha256 == payload_sha256:
            return self
        for variant in self.variants:
            if variant.payload_sha256 == payload_sha256:
                others = tuple(v for v in (self.event, *self.variants) if v is not variant)
                return Candidate(variant, self.record_ids, others)
        return None


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
    # The claimed payload's fingerprint: a re-send with another payload never takes over
    # (first one wins); None for claims written before claims carried it.
    payload_sha256: str | None = None


@dataclass(frozen=True)
class ArrivalMark:
    """An event that reached the relay and is not claimed yet: it keeps its place (lease busy,
    claim refused, an older event pending), so newer events wait for it as for an in-flight
    claim. Marked without the lease, before any claim; the first copy's mark is kept, so an
    event's place (and the event id it is delivered under) never moves between copies."""

    dedup_key: str
    event_id: str
    sequence: int | None
    occurred_at: str
    marked_at_ms: int
    order_rank: int | None = None

    @classmethod
    def of(cls, event: CanonicalEvent, now_ms: int) -> ArrivalMark:
        return cls(
            event.dedup_key,
            event.event_id,
            event.sequence,
            event.occurred_at,
            now_ms,
            event.order_rank,
        )


@dataclass(frozen=True)
class InteractionRecord:
    interaction_id: str
    version: int = 0  # 0: no record yet
    lease_owner: str | None = None
    lease_until_ms: int = 0
    hwm: HighWaterMark = field(default_factory=HighWaterMark)
    inflight: Mapping[str, InflightClaim] = field(default_factory=dict)
    marks: Mapping[str, ArrivalMark] = field(default_factory=dict)

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
    # The consumers it may reach now: None for all of them; while an older event of its
    # interaction is in flight, only the consumers that older event has reached already.
    open_to: frozenset[str] | None = None

    def may_reach(self, consumer: str) -> bool:
        return consumer not in self.claim.delivered and (
            self.open_to is None or consumer in self.open_to
        )


def reached_by_all(blockers: Sequence[InflightClaim | ArrivalMark]) -> frozenset[str] | None:
    """The consumers every one of these older pending events has reached already: an event
    newer than them may go to those consumers and no others (None: no blocker, any consumer).
    A mark has reached nobody yet."""
    if not blockers:
        return None
    reached = [b.delivered if isinstance(b, InflightClaim) else frozenset() for b in blockers]
    return frozenset.intersection(*reached)


@dataclass(frozen=True)
class InteractionPlan:
    interaction_id: str
    duplicates: tuple[tuple[Candidate, bool], ...] = ()  # (candidate, payload conflicts)
    waiting: tuple[Candidate, ...] = ()  # retried later, for the reason in `wait_reasons`
    wait_reasons: Mapping[str, str] = field(default_factory=dict)  # dedup key -> reason

    def wait(self, candidates: Sequence[Candidate], reason: str) -> InteractionPlan:
        reasons = {**self.wait_reasons, **{c.dedup_key: reason for c in candidates}}
        return replace(self, waiting=self.waiting + tuple(candidates), wait_reasons=reasons)

    def wait_reason(self, candidate: Candidate) -> str:
        return self.wait_reasons[candidate.dedup_key]

    publications: tuple[Publication, ...] = ()  # in order-key order
    claimed: InteractionRecord | None = None  # the record to write to claim them
    abandoned: tuple[str, ...] = ()  # stuck claims no longer blocking (kept, to be resumed)


@dataclass(frozen=True)
class LeaseTerms:
    owner: str
    now_ms: int
    lease_ms: int
    stuck_ms: int  # a claim older than this no longer blocks (its record went to the DLQ)
    received_at: str
    # A mark or claim younger than this (the function timeout) may belong to an invocation
    # still running; an older one's record is backing off in the queue.
    live_ms: int


# Wait reasons no pause in the invocation clears: the older event waited for is settled as far
# as it goes, or its invocation has ended, and its record comes back through the queue.
OLDER_EVENT_RETRYING = "older_event_retrying"


def being_delivered(blocker: InflightClaim | ArrivalMark, terms: LeaseTerms) -> bool:
    """Whether an invocation may be delivering this older event right now. A claim that reached
    some consumer was settled once already (the rest is retried through the queue)."""
    if isinstance(blocker, InflightClaim):
        if blocker.delivered:
            return False
        since = blocker.claimed_at_ms
    else:
        since = blocker.marked_at_ms
    return terms.now_ms - since < terms.live_ms


def placed(candidate: Candidate, place: ArrivalMark | InflightClaim | None) -> Candidate:
    """The candidate at the place its event already holds: the first copy's arrival mark or
    claim. Copies of one event (a provider re-send under a new envelope id, whose envelope time
    may differ too) then compare alike in every batch; without this, two events could each wait
    for the other, each compared against a different copy."""
    if place is None:
        return candidate
    event = replace(
        candidate.event,
        event_id=place.event_id,
        sequence=place.sequence,
        occurred_at=place.occurred_at,
        order_rank=place.order_rank,
    )
    return Candidate(event, candidate.record_ids, candidate.variants)


def received_at(mark: ArrivalMark | None, terms: LeaseTerms) -> str:
    """When the event first reached the relay: its arrival mark's time (this batch's own mark
    when it arrived now)."""
    if mark is None:
        return terms.received_at
    return rfc3339(datetime.fromtimestamp(mark.marked_at_ms / 1000, UTC))


def plan_interaction(
    record: InteractionRecord,
    candidates: Sequence[Candidate],
    stored: Mapping[str, str],
    terms: LeaseTerms,
) -> InteractionPlan:
    """Decide what happens to one interaction's candidates.

    `stored` maps dedup keys already delivered (events table) to their payload fingerprint.
    The record's marks are the events that reached the relay and are not claimed yet, this
    batch's among them (the batch marked them before planning).
    """
    duplicates = tuple(
        (c, stored[c.dedup_key] != c.event.payload_sha256)
        for c in candidates
        if c.dedup_key in stored
    )
    fresh = [
        placed(c, record.inflight.get(c.dedup_key) or record.marks.get(c.dedup_key))
        for c in candidates
        if c.dedup_key not in stored
    ]
    plan = InteractionPlan(record.interaction_id, duplicates=duplicates)
    if not fresh:
        return plan
    # A holder whose every claim is stored has finished: it releases a lease only when
    # something stays in flight (that saves a write per interaction and batch).
    holder_busy = any(key not in stored for key in record.inflight)
    if holder_busy and record.leased_by_other(terms.owner, terms.now_ms):
        return plan.wait(fresh, "interaction_busy")

    # A re-send of an in-flight event with another payload waits until the first payload is
    # stored (then it is a duplicate, counted as a conflict); one that carries the first
    # payload among its variants goes on with that one.
    conflicting: list[Candidate] = []
    kept_payload: list[Candidate] = []
    for candidate in fresh:
        claim = record.inflight.get(candidate.dedup_key)
        same = candidate if claim is None else candidate.carrying(claim.payload_sha256)
        if same is None:
            conflicting.append(candidate)
        else:
            kept_payload.append(same)
    fresh = kept_payload
    plan = plan.wait(conflicting, "conflicting_resend")

    in_batch = {c.dedup_key for c in fresh}
    inflight: dict[str, InflightClaim] = {}
    abandoned: list[str] = []
    # Claimed earlier (or arrived earlier), not in this batch, not at every consumer.
    pending: list[InflightClaim | ArrivalMark] = []
    for key, claim in record.inflight.items():
        if key in stored:
            continue  # delivered; the crash came after storing it, before the record
        # Every unfinished claim stays in the record, a stuck one too: it no longer holds its
        # interaction back, but a later copy of its event (a re-drive) resumes it, so the
        # consumers that had it do not get it again and its `late` stays as decided.
        inflight[key] = claim
        if key in in_batch:
            continue
        if terms.now_ms - claim.claimed_at_ms >= terms.stuck_ms:
            abandoned.append(key)
        else:
            pending.append(claim)
    # Marks that still hold a place: not claimed, not stored, not stuck (the record that left
    # a stuck one is in the DLQ by then).
    marks = {
        key: mark
        for key, mark in record.marks.items()
        if key not in stored
        and key not in record.inflight
        and terms.now_ms - mark.marked_at_ms < terms.stuck_ms
    }
    # An event that arrived earlier and waits for its turn holds its place like a pending one
    # (FIFO-like: it was received before the newer ones).
    pending += [mark for key, mark in marks.items() if key not in in_batch]
    # A pending event holds back the newer ones (they would overtake it) and nothing else: an
    # older fresh event is late anyway, and an older claimed one is due before it. Holding
    # back more would deadlock two pending events whose records SQS returns in separate batches.
    # Held back per consumer: a newer event goes now to the consumers every older pending event
    # has reached (order holds at each of them), so one consumer's outage does not stop the
    # others; it waits only when there is none left to reach.
    # Mixed keys (some event of the interaction without a sequence, sent or not): by time.
    mixed = (
        record.hwm.unsequenced
        or by_time(c.event for c in fresh)
        or by_time(inflight.values())
        or by_time(pending)
    )
    blockers = {
        c.dedup_key: [p for p in pending if precedes(p, c.event, mixed=mixed)] for c in fresh
    }
    open_to = {key: reached_by_all(older) for key, older in blockers.items()}

    def nothing_to_reach(candidate: Candidate) -> bool:
        reachable = open_to[candidate.dedup_key]
        claim = inflight.get(candidate.dedup_key)
        delivered = claim.delivered if claim is not None else frozenset()
        return reachable is not None and reachable <= delivered

    waiting = [c for c in fresh if nothing_to_reach(c)]
    ready = [c for c in fresh if c not in waiting]
    live = [c for c in waiting if any(being_delivered(b, terms) for b in blockers[c.dedup_key])]
    plan = plan.wait(live, "older_event_pending")
    plan = plan.wait([c for c in waiting if c not in live], OLDER_EVENT_RETRYING)
    if not ready:
        return plan

    hwm = record.hwm
    publications = []
    for candidate in sort_interaction(ready, event_of=lambda c: c.event, mixed=mixed):
        claim = inflight.get(candidate.dedup_key)
        if claim is None:
            event = candidate.event
            claim = InflightClaim(
                dedup_key=candidate.dedup_key,
                event_id=event.event_id,
                sequence=event.sequence,
                occurred_at=event.occurred_at,
                late=hwm.is_late(event),
                received_at=received_at(record.marks.get(candidate.dedup_key), terms),
                claimed_at_ms=terms.now_ms,
                order_rank=event.order_rank,
                payload_sha256=event.payload_sha256,
            )
            hwm = hwm.advance(event)
            inflight[candidate.dedup_key] = claim
        marks.pop(candidate.dedup_key, None)  # its claim holds its place from here
        publications.append(Publication(candidate, claim, open_to[candidate.dedup_key]))
    claimed = InteractionRecord(
        interaction_id=record.interaction_id,
        version=record.version + 1,
        lease_owner=terms.owner,
        lease_until_ms=terms.now_ms + terms.lease_ms,
        hwm=hwm,
        inflight=inflight,
        marks=marks,
    )
    return replace(
        plan, publications=tuple(publications), claimed=claimed, abandoned=tuple(abandoned)
    )


@dataclass(frozen=True)
class Settlement:
    done: tuple[Publication, ...]  # reached every consumer: store, acknowledge
    pending: tuple[Publication, ...]  # a publish to some consumer failed: in flight, retried
    record: InteractionRecord  # lease released
    refused: tuple[Publication, ...] = ()  # a consumer's topic refused it for good: poison
    # Reached every consumer open to it, the rest wait for an older event: in flight, retried.
    held: tuple[Publication, ...] = ()

    @property
    def record_needs_writing(self) -> bool:
        """When something stays in flight, or a refused claim leaves it: once every claim is
        stored, readers know the holder is done (plan_interaction), so the claimed record can
        stay as it is; a refused claim would hold its interaction back until it got stuck."""
        return bool(self.record.inflight) or bool(self.refused)


def settle_interaction(
    claimed: InteractionRecord,
    publications: Sequence[Publication],
    reached: Mapping[str, Collection[str]],
    consumers: Collection[str],
    refused: Collection[str] = (),
) -> Settlement:
    """After publishing: `reached` maps dedup keys to the consumers this attempt reached;
    `refused` names the dedup keys a topic refused for good (they leave the flight)."""
    inflight = dict(claimed.inflight)
    done: list[Publication] = []
    pending: list[Publication] = []
    poison: list[Publication] = []
    held: list[Publication] = []
    for publication in publications:
        key = publication.candidate.dedup_key
        delivered = publication.claim.delivered | frozenset(reached.get(key, ()))
        if delivered >= frozenset(consumers):
            inflight.pop(key, None)
            done.append(publication)
        elif key in refused:
            inflight.pop(key, None)
            poison.append(publication)
        else:
            claim = replace(publication.claim, delivered=delivered)
            inflight[key] = claim
            settled = replace(publication, claim=claim)
            open_to = publication.open_to
            (held if open_to is not None and open_to <= delivered else pending).append(settled)
    record = replace(
        claimed,
        version=claimed.version + 1,
        lease_owner=None,
        lease_until_ms=0,
        inflight=inflight,
    )
    return Settlement(tuple(done), tuple(pending), record, tuple(poison), tuple(held))

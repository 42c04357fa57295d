"""Dedup and ordering decisions (claims.py, ordering.py): pure, exhaustively generated.

The model: one interaction's events; a ledger record holding a lease, a high-water mark and
in-flight claims; `plan_interaction` decides per batch, `settle_interaction` records what the
publish reached. The stateful test at the end drives both through many batches with publishes
that reach only part of the consumers and checks what each consumer received.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from chalicelib.formats import parse_rfc3339, rfc3339
from chalicelib.ingest.claims import (
    ArrivalMark,
    Candidate,
    InflightClaim,
    InteractionPlan,
    InteractionRecord,
    LeaseTerms,
    Publication,
    plan_interaction,
    settle_interaction,
)
from chalicelib.ingest.ordering import HighWaterMark, sequence_key, sort_interaction, time_key
from chalicelib.model import CanonicalEvent

BASE = datetime(2026, 11, 29, 9, 0, 0, tzinfo=UTC)
NOW_MS = int((BASE + timedelta(hours=1)).timestamp() * 1000)
LEASE_MS = 60_000
STUCK_MS = 15 * 60_000
LIVE_MS = 30_000  # the function timeout
CONSUMERS = ("analytics-sink", "crm-updater", "agent-dashboard")
ME = "invocation-me"


def make_event(
    number: int,
    *,
    sequence: int | None = None,
    offset_ms: int = 0,
    dedup_key: str | None = None,
    payload: str = "p",
) -> CanonicalEvent:
    event_id = f"e{number:03d}"
    detail = {"interaction.id": "int-1", "stage": "Connected", "note": payload}
    return CanonicalEvent(
        event_id=event_id,
        dedup_key=dedup_key or event_id,
        interaction_id="int-1",
        participant_id=None,
        detail_type="Interaction.Lifecycle.StageChanged",
        stage="Connected",
        state=None,
        sequence=sequence,
        occurred_at=rfc3339(BASE + timedelta(milliseconds=offset_ms)),
        source="com.nice.cxone.interactions",
        event={"id": event_id, "detail": detail},
    )


def order_key(event: CanonicalEvent, with_sequence: bool) -> tuple[Any, str]:
    return sequence_key(event) if with_sequence else time_key(event)


@st.composite
def interaction_events(
    draw: st.DrawFn, min_size: int = 1, max_size: int = 8, kind: str | None = None
) -> list[CanonicalEvent]:
    """Distinct events of one interaction: all with a sequence, or all with times only.

    Sequences and times may tie (ties are broken by event id); a sequenced interaction's
    times follow its sequence, as a provider's clock would.
    """
    kind = kind or draw(st.sampled_from(["sequence", "time"]))
    count = draw(st.integers(min_size, max_size))
    events = []
    for number in range(count):
        if kind == "sequence":
            sequence = draw(st.integers(0, 12))
            events.append(make_event(number, sequence=sequence, offset_ms=sequence * 1000))
        else:
            events.append(make_event(number, offset_ms=draw(st.integers(0, 6)) * 500))
    return events


mixed_events = st.lists(
    st.builds(
        make_event,
        st.integers(0, 999),
        sequence=st.none() | st.integers(0, 9),
        offset_ms=st.integers(0, 9).map(lambda n: n * 250),
    ),
    max_size=8,
    unique_by=lambda e: e.event_id,
)


# --------------------------------------------------------------------------- ordering


@given(events=mixed_events, data=st.data())
def test_sort_interaction_is_one_order_whatever_the_arrival(events, data) -> None:
    arrival = data.draw(st.permutations(events))
    ordered = sort_interaction(arrival)

    assert sorted(e.event_id for e in ordered) == sorted(e.event_id for e in events)
    assert ordered == sort_interaction(events)
    # Sequence order only when every event has one (the key kinds are not comparable).
    with_sequence = all(e.sequence is not None for e in events)
    keys = [order_key(e, with_sequence) for e in ordered]
    assert keys == sorted(keys)


@given(events=mixed_events)
def test_sort_interaction_sorts_things_carrying_events(events) -> None:
    wrapped = [Candidate(e, (f"m-{e.event_id}",)) for e in events]
    assert [c.event for c in sort_interaction(wrapped, event_of=lambda c: c.event)] == (
        sort_interaction(events)
    )


def fold(mark: HighWaterMark, events: Sequence[CanonicalEvent]) -> HighWaterMark:
    for event in events:
        mark = mark.advance(event)
    return mark


@given(events=mixed_events, data=st.data())
def test_high_water_mark_holds_the_greatest_key_of_each_kind(events, data) -> None:
    mark = fold(HighWaterMark(), data.draw(st.permutations(events)))

    sequenced = [sequence_key(e) for e in events if e.sequence is not None]
    assert mark.sequence == (max(sequenced) if sequenced else None)
    assert mark.time == (max(map(time_key, events)) if events else None)
    assert mark.unsequenced is any(e.sequence is None for e in events)


@given(sent=mixed_events, event=mixed_events.filter(bool).map(lambda es: es[0]))
def test_an_event_is_late_exactly_when_older_than_the_mark_of_its_kind(sent, event) -> None:
    """By sequence only while the interaction's events (sent ones and this one) all carry a
    sequence; as soon as one does not, by time (the mixed-key rule)."""
    mark = fold(HighWaterMark(), sent)
    mixed = event.sequence is None or any(e.sequence is None for e in sent)
    if not mixed and mark.sequence is not None:
        expected = sequence_key(event) < mark.sequence
    else:
        expected = mark.time is not None and time_key(event) < mark.time
    assert mark.is_late(event) is expected
    if not expected:
        # Sending it makes it the newest: it is not late against itself.
        assert not mark.advance(event).is_late(event)


@given(events=mixed_events, data=st.data())
def test_with_mixed_keys_the_events_not_flagged_late_go_out_in_time_order(events, data) -> None:
    """Events claimed one by one in any arrival order: once an event without a sequence was
    sent, every later event that is not flagged late is newer by time than all sent before
    it, so consumers see an interaction's timely events in time order."""
    mark = HighWaterMark()
    sent: list[CanonicalEvent] = []
    for event in data.draw(st.permutations(events)):
        timely = not mark.is_late(event)
        mixed = event.sequence is None or any(e.sequence is None for e in sent)
        if timely and mixed:
            assert all(time_key(e) <= time_key(event) for e in sent), (event, sent)
        mark = mark.advance(event)
        sent.append(event)


def test_a_sequenced_event_older_by_time_than_an_unsequenced_one_sent_is_late() -> None:
    unsequenced = make_event(1, offset_ms=5_000)
    sequenced_before = make_event(2, sequence=3, offset_ms=1_000)
    sequenced_after = make_event(3, sequence=9, offset_ms=2_000)
    mark = fold(HighWaterMark(), [sequenced_before, unsequenced])
    # Sequence 9 is above the sequence mark, but 2 s is before the time mark (5 s).
    assert mark.is_late(sequenced_after)


def test_the_ledger_keeps_the_mixed_flag_and_reads_records_written_without_it() -> None:
    from chalicelib.ingest.ledger import decode_record, encode_record

    mark = fold(HighWaterMark(), [make_event(1, sequence=2), make_event(2, offset_ms=9)])
    record = InteractionRecord("int-1", version=3, hwm=mark)
    assert decode_record("int-1", encode_record(record, expires_at=1)).hwm == mark
    # Written before the flag existed: a time mark and no sequence mark means unsequenced only.
    legacy = {"pk": {"S": "int-1"}, "v": {"N": "1"}, "lu": {"N": "0"}}
    legacy |= {"ht": {"S": "2026-11-29T09:00:00.000Z"}, "hti": {"S": "e001"}}
    assert decode_record("int-1", legacy).hwm.unsequenced
    with_both = legacy | {"hs": {"N": "4"}, "hsi": {"S": "e001"}}
    assert not decode_record("int-1", with_both).hwm.unsequenced


@given(kind=st.sampled_from(["sequence", "time"]), data=st.data())
def test_a_late_event_stays_late_as_the_mark_advances(kind, data) -> None:
    """Within one kind of key. (Mixed interactions compare pairwise, which is not monotone:
    a sequenced event late by time becomes timely once a sequence enters the mark.)"""
    events = data.draw(interaction_events(min_size=3, kind=kind))
    cut = data.draw(st.integers(0, len(events)))
    mark = fold(HighWaterMark(), events[:cut])
    later = fold(mark, events[cut:])
    for event in events:
        if mark.is_late(event):
            assert later.is_late(event)


# --------------------------------------------------------------------------- plan


def terms(owner: str = ME, now_ms: int = NOW_MS) -> LeaseTerms:
    return LeaseTerms(
        owner=owner,
        now_ms=now_ms,
        lease_ms=LEASE_MS,
        stuck_ms=STUCK_MS,
        received_at=rfc3339(datetime.fromtimestamp(now_ms / 1000, UTC)),
        live_ms=LIVE_MS,
    )


def claim_of(
    event: CanonicalEvent, *, late: bool, delivered: Sequence[str], claimed_at_ms: int
) -> InflightClaim:
    return InflightClaim(
        dedup_key=event.dedup_key,
        event_id=event.event_id,
        sequence=event.sequence,
        occurred_at=event.occurred_at,
        late=late,
        received_at="2026-11-29T09:30:00.000Z",
        claimed_at_ms=claimed_at_ms,
        delivered=frozenset(delivered),
    )


ALL_LEASES = ("none", "mine", "other", "other-expired")
FREE_LEASES = ("none", "mine", "other-expired")


@st.composite
def ledger_states(
    draw: st.DrawFn, leases: Sequence[str] = ALL_LEASES
) -> tuple[InteractionRecord, list[Candidate], dict[str, str]]:
    """A record some earlier batches left behind, and a new batch's candidates.

    Every event has a role: already sent and stored, in flight (claimed, maybe partly
    delivered, maybe stuck), or never seen; the batch holds any of them, re-sends included.
    """
    events = draw(interaction_events(min_size=1, max_size=8))
    roles = draw(
        st.lists(
            st.sampled_from(["stored", "inflight", "stuck", "new"]),
            min_size=len(events),
            max_size=len(events),
        )
    )
    claimed_before = [e for e, r in zip(events, roles, strict=True) if r != "new"]
    hwm = fold(HighWaterMark(), claimed_before)
    inflight = {}
    stored = {}
    for event, role in zip(events, roles, strict=True):
        if role == "stored":
            stored[event.dedup_key] = event.payload_sha256
        elif role in ("inflight", "stuck"):
            age = STUCK_MS + 1 if role == "stuck" else draw(st.integers(0, STUCK_MS - 1))
            inflight[event.dedup_key] = claim_of(
                event,
                late=draw(st.booleans()),
                delivered=draw(st.lists(st.sampled_from(CONSUMERS[:-1]), unique=True)),
                claimed_at_ms=NOW_MS - age,
            )
    # A stored event may still be listed in flight (a crash after storing, before releasing).
    for event, role in zip(events, roles, strict=True):
        if role == "stored" and draw(st.booleans()):
            inflight[event.dedup_key] = claim_of(
                event, late=False, delivered=CONSUMERS, claimed_at_ms=NOW_MS - 1000
            )
    lease = draw(st.sampled_from(leases))
    owner = {"none": None, "mine": ME, "other": "someone", "other-expired": "someone"}[lease]
    until = NOW_MS - 1 if lease == "other-expired" else NOW_MS + 5000
    record = InteractionRecord(
        interaction_id="int-1",
        version=draw(st.integers(1, 50)),
        lease_owner=owner,
        lease_until_ms=until if owner else 0,
        hwm=hwm,
        inflight=inflight,
    )
    in_batch = draw(st.lists(st.sampled_from(events), unique_by=lambda e: e.dedup_key))
    candidates = []
    for event in in_batch:
        # A re-send of a stored event may carry another payload (a conflict).
        if event.dedup_key in stored and draw(st.booleans()):
            event = replace(event, event={"id": event.event_id, "detail": {"changed": True}})
        candidates.append(Candidate(event, (f"m-{event.event_id}",)))
    return record, candidates, stored


def precedes(first: Any, second: Any, mixed: bool = False) -> bool:
    if not mixed and first.sequence is not None and second.sequence is not None:
        return sequence_key(first) < sequence_key(second)
    return time_key(first) < time_key(second)


@settings(max_examples=400)
@given(state=ledger_states())
def test_plan_decides_every_candidate_once(state) -> None:
    record, candidates, stored = state
    plan = plan_interaction(record, candidates, stored, terms())

    duplicates = {c.dedup_key: conflict for c, conflict in plan.duplicates}
    waiting = {c.dedup_key for c in plan.waiting}
    published = [p.candidate.dedup_key for p in plan.publications]
    # Every candidate gets exactly one decision.
    assert sorted([*duplicates, *waiting, *published]) == sorted(c.dedup_key for c in candidates)
    # Duplicates are exactly the stored ones; a conflict is a different payload.
    for candidate in candidates:
        if candidate.dedup_key in stored:
            changed = stored[candidate.dedup_key] != candidate.event.payload_sha256
            assert duplicates[candidate.dedup_key] is changed
    fresh = [c for c in candidates if c.dedup_key not in stored]
    if not fresh:
        assert plan.claimed is None and not plan.waiting
        return
    # A holder whose claims are all stored has finished (it skipped its release write).
    holder_busy = any(key not in stored for key in record.inflight)
    if holder_busy and record.leased_by_other(ME, NOW_MS):
        assert waiting == {c.dedup_key for c in fresh} and set(plan.wait_reasons.values()) == {
            "interaction_busy"
        }
        assert plan.claimed is None
        return
    # Publications come in order-key order; a claim is written exactly when something is.
    assert [p.candidate for p in plan.publications] == sort_interaction(
        [p.candidate for p in plan.publications], event_of=lambda c: c.event
    )
    assert (plan.claimed is not None) == bool(plan.publications)
    if waiting:
        assert set(plan.wait_reasons.values()) <= {"older_event_pending", "older_event_retrying"}


@settings(max_examples=200)
@given(state=ledger_states(FREE_LEASES))
def test_a_claim_takes_the_lease_and_keeps_what_earlier_claims_decided(state) -> None:
    record, candidates, stored = state
    plan = plan_interaction(record, candidates, stored, terms())
    assume(plan.claimed is not None)
    claimed = plan.claimed
    assert claimed.version == record.version + 1
    assert (claimed.lease_owner, claimed.lease_until_ms) == (ME, NOW_MS + LEASE_MS)

    new_claims = []
    for publication in plan.publications:
        before = record.inflight.get(publication.candidate.dedup_key)
        if before is not None:
            # A retry keeps `late`, the consumers reached and the first receipt time.
            assert publication.claim == before
        else:
            new_claims.append(publication)
            assert publication.claim.delivered == frozenset()
            assert publication.claim.claimed_at_ms == NOW_MS
            # One kind of key per interaction here, so `late` is "older than the mark".
            assert publication.claim.late is record.hwm.is_late(publication.candidate.event)
        assert claimed.inflight[publication.candidate.dedup_key] == publication.claim
    assert claimed.hwm == fold(record.hwm, [p.candidate.event for p in new_claims])

    # Stored keys leave the record; stuck claims (not in the batch) no longer block but stay,
    # unchanged, to be resumed; the other claims of earlier batches stay in flight, unchanged.
    in_batch = {c.dedup_key for c in candidates}
    for key, claim in record.inflight.items():
        stuck = NOW_MS - claim.claimed_at_ms >= STUCK_MS
        if key in stored:
            assert key not in claimed.inflight
        elif key not in in_batch and stuck:
            assert key in plan.abandoned and claimed.inflight[key] == claim
        else:
            assert key not in plan.abandoned
            if key not in {p.candidate.dedup_key for p in plan.publications}:
                assert claimed.inflight[key] == claim


@settings(max_examples=300)
@given(state=ledger_states(FREE_LEASES))
def test_only_events_newer_than_a_pending_claim_wait_and_only_for_consumers_it_misses(
    state,
) -> None:
    """An event not yet at every consumer holds back newer events of its interaction (they
    would overtake it) at the consumers it has not reached, and nothing else: older events
    are late anyway, or still due; a consumer every older pending event has reached gets the
    newer one now (one consumer's outage does not stop the others)."""
    record, candidates, stored = state
    plan = plan_interaction(record, candidates, stored, terms())
    in_batch = {c.dedup_key for c in candidates}
    pending = [
        claim
        for key, claim in record.inflight.items()
        if key not in stored and key not in in_batch and NOW_MS - claim.claimed_at_ms < STUCK_MS
    ]
    fresh = [c.event for c in candidates if c.dedup_key not in stored]
    kept = [
        claim
        for key, claim in record.inflight.items()
        if key not in stored and (key in in_batch or NOW_MS - claim.claimed_at_ms < STUCK_MS)
    ]
    mixed = any(e.sequence is None for e in [*fresh, *kept]) or record.hwm.unsequenced
    published = {p.candidate.dedup_key: p for p in plan.publications}
    for candidate in candidates:
        if candidate.dedup_key in stored:
            continue
        blockers = [claim for claim in pending if precedes(claim, candidate.event, mixed)]
        own = record.inflight.get(candidate.dedup_key)
        if not blockers:
            assert published[candidate.dedup_key].open_to is None, candidate.event
            continue
        reachable = frozenset(CONSUMERS).intersection(*(b.delivered for b in blockers))
        if reachable <= (own.delivered if own else frozenset()):
            assert candidate in plan.waiting, (candidate.event, blockers)
        else:
            publication = published[candidate.dedup_key]
            assert publication.open_to == reachable, (candidate.event, blockers)
            assert {c for c in CONSUMERS if publication.may_reach(c)} == reachable - (
                own.delivered if own else frozenset()
            )


@given(state=ledger_states(FREE_LEASES))
def test_the_oldest_unfinished_event_can_always_go_alone(state) -> None:
    """Liveness: SQS may hand back an interaction's failed records one by one, in any order;
    whatever the ledger holds, the oldest unfinished event must not wait for a newer one."""
    record, _, stored = state
    unfinished = [
        claim
        for key, claim in record.inflight.items()
        if key not in stored and NOW_MS - claim.claimed_at_ms < STUCK_MS
    ]
    assume(unfinished)
    oldest = sort_interaction(unfinished)[0]
    event = make_event(
        int(oldest.event_id[1:]),
        sequence=oldest.sequence,
        offset_ms=int(
            (datetime.fromisoformat(oldest.occurred_at.replace("Z", "+00:00")) - BASE)
            / timedelta(milliseconds=1)
        ),
    )
    plan = plan_interaction(record, [Candidate(event, ("m-retry",))], stored, terms())
    assert [p.candidate.dedup_key for p in plan.publications] == [oldest.dedup_key]


def test_two_pending_events_each_retried_alone_both_finish() -> None:
    """The concrete case behind the liveness property: a batch claimed E1 and E2, one consumer
    missed both; their records come back in separate batches."""
    first, second = make_event(1, sequence=1), make_event(2, sequence=2)
    plan = plan_interaction(
        InteractionRecord("int-1"),
        [Candidate(first, ("m1",)), Candidate(second, ("m2",))],
        {},
        terms(owner="earlier"),
    )
    assert plan.claimed is not None
    reached = {first.dedup_key: CONSUMERS[:2], second.dedup_key: CONSUMERS[:2]}
    record = settle_interaction(plan.claimed, plan.publications, reached, CONSUMERS).record

    alone_second = plan_interaction(record, [Candidate(second, ("m2",))], {}, terms())
    assert [c.dedup_key for c in alone_second.waiting] == [second.dedup_key]
    alone_first = plan_interaction(record, [Candidate(first, ("m1",))], {}, terms())
    assert [p.candidate.dedup_key for p in alone_first.publications] == [first.dedup_key]
    assert alone_first.publications[0].claim.delivered == frozenset(CONSUMERS[:2])


def test_one_consumers_outage_holds_newer_events_back_at_that_consumer_only() -> None:
    """E1 reached two consumers, the third (its topic down) missed it. E2, newer, goes to the
    two now; it waits for the third until E1 is there, and then goes to the third alone."""
    first, second = make_event(1, sequence=1), make_event(2, sequence=2)
    healthy, down = frozenset(CONSUMERS[:2]), CONSUMERS[2]
    before = plan_interaction(
        InteractionRecord("int-1"), [Candidate(first, ("m1",))], {}, terms("earlier")
    )
    assert before.claimed is not None
    reached = {first.dedup_key: healthy}
    record = settle_interaction(before.claimed, before.publications, reached, CONSUMERS).record

    plan = plan_interaction(record, [Candidate(second, ("m2",))], {}, terms())
    (publication,) = plan.publications
    assert publication.open_to == healthy and not publication.may_reach(down)
    assert {c for c in CONSUMERS if publication.may_reach(c)} == healthy
    assert plan.claimed is not None
    settled = settle_interaction(plan.claimed, plan.publications, {"e002": healthy}, CONSUMERS)
    assert [p.candidate.dedup_key for p in settled.held] == ["e002"] and not settled.pending
    assert settled.record.inflight["e002"].delivered == healthy

    # Retried while E1 still misses the third consumer: nothing to send, so no claim written;
    # E1's record is backing off in the queue, so E2's goes back there too (no turn to wait).
    retried = plan_interaction(settled.record, [Candidate(second, ("m2",))], {}, terms())
    assert retried.claimed is None and retried.wait_reason(Candidate(second, ("m2",))) == (
        "older_event_retrying"
    )
    # E1 reached the third consumer (stored): E2 follows it there, and only there.
    stored = {first.dedup_key: first.payload_sha256}
    after = plan_interaction(settled.record, [Candidate(second, ("m2",))], stored, terms())
    (resumed,) = after.publications
    assert resumed.open_to is None and [c for c in CONSUMERS if resumed.may_reach(c)] == [down]
    assert resumed.claim.late is False and resumed.claim.event_id == "e002"


def test_a_busy_lease_holds_every_fresh_event_but_not_duplicates() -> None:
    stored_event, fresh = make_event(1, sequence=1), make_event(2, sequence=2)
    holders_event = make_event(3, sequence=3)
    holders_claim = claim_of(holders_event, late=False, delivered=(), claimed_at_ms=NOW_MS)
    record = InteractionRecord(
        "int-1",
        version=3,
        lease_owner="someone",
        lease_until_ms=NOW_MS + 1,
        inflight={holders_event.dedup_key: holders_claim},
    )
    plan = plan_interaction(
        record,
        [Candidate(stored_event, ("m1",)), Candidate(fresh, ("m2",))],
        {stored_event.dedup_key: stored_event.payload_sha256},
        terms(),
    )
    assert [(c.dedup_key, conflict) for c, conflict in plan.duplicates] == [("e001", False)]
    assert [c.dedup_key for c in plan.waiting] == ["e002"]
    assert set(plan.wait_reasons.values()) == {"interaction_busy"} and plan.claimed is None
    # The same lease, expired (its holder crashed), is taken over.
    expired = replace(record, lease_until_ms=NOW_MS)
    taken = plan_interaction(expired, [Candidate(fresh, ("m2",))], {}, terms())
    assert taken.claimed is not None and taken.claimed.lease_owner == ME


def test_a_holder_whose_claims_are_all_stored_has_finished() -> None:
    """The holder skipped its release write: its stored claims free the interaction."""
    done_event, fresh = make_event(1, sequence=1), make_event(2, sequence=2)
    record = InteractionRecord(
        "int-1",
        version=3,
        lease_owner="someone",
        lease_until_ms=NOW_MS + 60_000,
        inflight={
            done_event.dedup_key: claim_of(
                done_event, late=False, delivered=CONSUMERS, claimed_at_ms=NOW_MS
            )
        },
    )
    stored = {done_event.dedup_key: done_event.payload_sha256}
    plan = plan_interaction(record, [Candidate(fresh, ("m2",))], stored, terms())
    assert not plan.waiting and plan.claimed is not None
    assert plan.claimed.lease_owner == ME and set(plan.claimed.inflight) == {fresh.dedup_key}


# --------------------------------------------------------------------------- settle


@st.composite
def settlements(draw: st.DrawFn) -> tuple[InteractionPlan, dict[str, list[str]]]:
    record, candidates, stored = draw(ledger_states(FREE_LEASES))
    plan = plan_interaction(record, candidates, stored, terms())
    assume(plan.claimed is not None)
    reached = {
        p.candidate.dedup_key: draw(st.lists(st.sampled_from(CONSUMERS), unique=True))
        for p in plan.publications
    }
    return plan, reached


@settings(max_examples=200, suppress_health_check=[HealthCheck.filter_too_much])
@given(case=settlements())
def test_settle_finishes_an_event_only_once_every_consumer_has_it(case) -> None:
    plan, reached = case
    assert plan.claimed is not None
    settlement = settle_interaction(plan.claimed, plan.publications, reached, CONSUMERS)
    record = settlement.record

    for publication in plan.publications:
        key = publication.candidate.dedup_key
        delivered = publication.claim.delivered | frozenset(reached[key])
        if delivered == frozenset(CONSUMERS):
            assert publication in settlement.done and key not in record.inflight
        else:
            # Held when it reached every consumer open to it (an older event still misses the
            # others), pending when a publish to an open consumer failed: in flight either way.
            open_to = publication.open_to
            held = open_to is not None and open_to <= delivered
            (pending,) = [
                p
                for p in (settlement.held if held else settlement.pending)
                if p.candidate.dedup_key == key
            ]
            assert pending.claim == replace(publication.claim, delivered=delivered)
            assert record.inflight[key] == pending.claim
    # The lease is released; claims of other batches and the mark are untouched.
    assert (record.lease_owner, record.lease_until_ms) == (None, 0)
    assert record.version == plan.claimed.version + 1
    assert record.hwm == plan.claimed.hwm
    published = {p.candidate.dedup_key for p in plan.publications}
    for key, claim in plan.claimed.inflight.items():
        if key not in published:
            assert record.inflight[key] == claim


# --------------------------------------------------------------------------- end to end


class OneInteraction(RuleBasedStateMachine):
    """Batches of one interaction's events through plan and settle, no crashes: each consumer
    receives every event once, the non-late ones in order-key order, and `late` only marks
    an event older than one claimed before it."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[CanonicalEvent] = []
        self.record = InteractionRecord("int-1")
        self.stored: dict[str, str] = {}
        self.received: dict[str, list[tuple[str, bool]]] = {c: [] for c in CONSUMERS}
        self.claimed_order: list[str] = []
        self.late: dict[str, bool] = {}
        self.batches = 0

    @rule(events=interaction_events(min_size=2, max_size=8))
    @precondition(lambda self: not self.events)
    def start(self, events: list[CanonicalEvent]) -> None:
        self.events = events

    @rule(data=st.data())
    @precondition(lambda self: bool(self.events))
    def batch(self, data: st.DataObject) -> None:
        unfinished = [e for e in self.events if e.dedup_key not in self.stored]
        if not unfinished:
            return
        chosen = data.draw(st.lists(st.sampled_from(unfinished), min_size=1, unique=True))
        self.run_batch(chosen, lambda consumer, due: data.draw(st.integers(0, len(due))))

    def run_batch(
        self,
        chosen: Sequence[CanonicalEvent],
        accepted_by: Callable[[str, list[Publication]], int],
    ) -> InteractionPlan:
        self.batches += 1
        plan = plan_interaction(
            self.record,
            [Candidate(e, (f"m-{e.event_id}",)) for e in chosen],
            self.stored,
            terms(owner=f"invocation-{self.batches}", now_ms=NOW_MS + self.batches),
        )
        if plan.claimed is None:
            return plan
        for publication in plan.publications:
            key = publication.candidate.dedup_key
            if key not in self.late:
                self.late[key] = publication.claim.late
                self.claimed_order.append(key)
            assert publication.claim.late is self.late[key]
        reached: dict[str, set[str]] = {}
        for consumer in CONSUMERS:
            due = [p for p in plan.publications if p.may_reach(consumer)]
            # publish_ordered: an interaction's messages stop at its first failure per topic.
            for publication in due[: accepted_by(consumer, due)]:
                key = publication.candidate.dedup_key
                self.received[consumer].append((key, publication.claim.late))
                reached.setdefault(key, set()).add(consumer)
        settlement = settle_interaction(plan.claimed, plan.publications, reached, CONSUMERS)
        self.record = settlement.record
        for done in settlement.done:
            self.stored[done.candidate.dedup_key] = done.candidate.event.payload_sha256
        return plan

    def teardown(self) -> None:
        """Liveness: the failed records come back one at a time, oldest first, and every
        publish now succeeds: the interaction drains, one event per batch."""
        for _ in range(len(self.events)):
            unfinished = [e for e in self.events if e.dedup_key not in self.stored]
            if not unfinished:
                break
            oldest = sort_interaction(unfinished)[0]
            plan = self.run_batch([oldest], lambda consumer, due: len(due))
            assert [p.candidate.dedup_key for p in plan.publications] == [oldest.dedup_key]
        assert len(self.stored) == len({e.dedup_key for e in self.events})
        self.each_consumer_gets_each_event_once_in_order()
        self.a_finished_event_is_at_every_consumer()

    @invariant()
    def each_consumer_gets_each_event_once_in_order(self) -> None:
        by_key = {e.dedup_key: e for e in self.events}
        for consumer, received in self.received.items():
            keys = [key for key, _ in received]
            assert len(keys) == len(set(keys)), (consumer, keys)
            timely = [by_key[key] for key, late in received if not late]
            with_sequence = all(e.sequence is not None for e in self.events)
            order = [order_key(e, with_sequence) for e in timely]
            assert order == sorted(order), (consumer, received)

    @invariant()
    def late_marks_only_events_older_than_an_earlier_claim(self) -> None:
        by_key = {e.dedup_key: e for e in self.events}
        for position, key in enumerate(self.claimed_order):
            earlier = [by_key[k] for k in self.claimed_order[:position]]
            older_than_earlier = any(precedes(by_key[key], e) for e in earlier)
            assert self.late[key] is older_than_earlier

    @invariant()
    def a_finished_event_is_at_every_consumer(self) -> None:
        for key in self.stored:
            for received in self.received.values():
                assert key in [k for k, _ in received]


TestOneInteraction = OneInteraction.TestCase
TestOneInteraction.settings = settings(
    max_examples=100,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --------------------------------------------------------------------------- arrival marks


def marked(*events: CanonicalEvent, marked_at_ms: int = NOW_MS - 1_000) -> InteractionRecord:
    """The record after these events' arrival was marked (and nothing claimed yet)."""
    marks = {e.dedup_key: ArrivalMark.of(e, marked_at_ms) for e in events}
    return InteractionRecord("int-1", version=len(events), marks=marks)


@given(events=interaction_events(min_size=2), data=st.data())
def test_an_event_newer_than_one_that_arrived_earlier_waits_for_it(events, data) -> None:
    """An arrival mark holds its event's place as an in-flight claim does: newer events wait,
    older ones go; a mark stops counting once its event is in the batch, stored or stuck."""
    earlier = data.draw(st.sampled_from(events))
    others = [e for e in events if e is not earlier]
    candidates = [Candidate(e, (f"m-{e.event_id}",)) for e in others]
    plan = plan_interaction(marked(earlier, *others), candidates, {}, terms())
    for candidate in candidates:
        assert (candidate in plan.waiting) is precedes(earlier, candidate.event)
        if candidate in plan.waiting:
            assert plan.wait_reason(candidate) == "older_event_pending"

    with_it = [*candidates, Candidate(earlier, ("m-earlier",))]
    assert not plan_interaction(marked(earlier, *others), with_it, {}, terms()).waiting
    stored = {earlier.dedup_key: earlier.payload_sha256}
    assert not plan_interaction(marked(earlier, *others), candidates, stored, terms()).waiting
    stuck = marked(earlier, marked_at_ms=NOW_MS - STUCK_MS)
    assert not plan_interaction(stuck, candidates, {}, terms()).waiting


def test_a_claim_keeps_the_marks_of_waiting_events_and_drops_the_rest() -> None:
    first, second, third, fourth = (make_event(n, sequence=n) for n in range(1, 5))
    record = marked(first, second, third, fourth)
    record = replace(
        record,
        marks={
            **record.marks,
            fourth.dedup_key: ArrivalMark.of(fourth, NOW_MS - STUCK_MS),  # its record is gone
        },
    )
    stored = {third.dedup_key: third.payload_sha256}
    # This batch holds the second event only: it waits for the first; nothing is claimed.
    waiting = plan_interaction(record, [Candidate(second, ("m2",))], stored, terms())
    assert waiting.claimed is None and waiting.wait_reason(Candidate(second, ("m2",)))
    # The first's batch claims it: its mark goes (its claim holds the place), the second's
    # stays, the stored third's and the stuck fourth's go.
    plan = plan_interaction(record, [Candidate(first, ("m1",))], stored, terms())
    assert plan.claimed is not None
    assert set(plan.claimed.marks) == {second.dedup_key}
    assert set(plan.claimed.inflight) == {first.dedup_key}


def test_a_claim_says_when_its_event_first_reached_the_relay() -> None:
    event = make_event(1, sequence=1)
    plan = plan_interaction(
        marked(event, marked_at_ms=NOW_MS - 4_000), [Candidate(event, ("m1",))], {}, terms()
    )
    (publication,) = plan.publications
    assert publication.claim.received_at == rfc3339(
        datetime.fromtimestamp((NOW_MS - 4_000) / 1000, UTC)
    )


@given(events=interaction_events(min_size=2), data=st.data())
def test_copies_of_an_event_hold_its_first_place_so_two_events_never_wait_for_each_other(
    events, data
) -> None:
    """Every event's first copy was marked; the batches carry other copies of them (a
    provider re-send: new envelope id, maybe another envelope time). Whatever the copies, the
    oldest event by its first place never waits, so an interaction always makes progress,
    and each claim carries the first copy's id, time and sequence."""
    record = marked(*events)
    copies = []
    for event in events:
        shifted = data.draw(st.integers(-5_000, 5_000))
        copy = replace(
            event,
            event_id=f"resend-{event.event_id}",
            occurred_at=rfc3339(parse_rfc3339(event.occurred_at) + timedelta(milliseconds=shifted)),
        )
        copies.append(Candidate(copy, (f"m-{event.event_id}",)))
    batch = data.draw(st.lists(st.sampled_from(copies), min_size=1, unique=True))
    plan = plan_interaction(record, batch, {}, terms())
    firsts = sort_interaction([record.marks[c.dedup_key] for c in batch])
    oldest = next(c for c in batch if c.dedup_key == firsts[0].dedup_key)
    everyone = sort_interaction(list(record.marks.values()))
    if everyone[0].dedup_key == oldest.dedup_key:
        assert oldest.dedup_key not in {c.dedup_key for c in plan.waiting}
    for publication in plan.publications:
        first = record.marks[publication.candidate.dedup_key]
        assert publication.claim.event_id == first.event_id
        assert publication.claim.occurred_at == first.occurred_at
        assert publication.claim.sequence == first.sequence


def test_arrival_marks_survive_the_ledger_encoding() -> None:
    from chalicelib.ingest.ledger import decode_record, encode_record

    record = replace(
        marked(make_event(1, sequence=4), make_event(2, offset_ms=7)),
        version=2,
        lease_owner=ME,
        lease_until_ms=NOW_MS,
    )
    assert decode_record("int-1", encode_record(record, expires_at=1)) == record


def test_a_stuck_claim_is_resumed_by_a_later_copy_not_claimed_again() -> None:
    """A claim older than the stuck age stops holding its interaction back; when its event
    comes back later (re-driven from the DLQ), it goes only to the consumers that miss it,
    with the `late` and event id decided at the first claim."""
    stuck_event, newer = make_event(1, sequence=1), make_event(2, sequence=2)
    claim = InflightClaim(
        dedup_key=stuck_event.dedup_key,
        event_id="first-copy",
        sequence=1,
        occurred_at=stuck_event.occurred_at,
        late=True,
        received_at="2026-11-29T09:00:00.000Z",
        claimed_at_ms=NOW_MS - STUCK_MS,
        delivered=frozenset({"analytics-sink"}),
    )
    record = InteractionRecord("int-1", version=4, inflight={claim.dedup_key: claim})

    unblocked = plan_interaction(record, [Candidate(newer, ("m2",))], {}, terms())
    assert not unblocked.waiting and unblocked.abandoned == (claim.dedup_key,)
    assert unblocked.claimed is not None
    assert unblocked.claimed.inflight[claim.dedup_key] == claim

    resumed = plan_interaction(unblocked.claimed, [Candidate(stuck_event, ("m1",))], {}, terms())
    (publication,) = resumed.publications
    assert publication.claim == claim  # delivered, late and event id as first decided

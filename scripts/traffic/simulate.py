"""Simulated contact-center traffic: realistic lifecycles, with the faults real traffic has.

Generation is pure and deterministic for a seed: `TrafficGenerator` / `generate_traffic` build
EventBridge events of the CXone profile (the CXone inbound contract); scripts.traffic.genesys
and scripts.traffic.connect do the same for Genesys Cloud and Amazon Connect, and
scripts.traffic.providers mixes them (`--provider`). Each records, per emitted item, whether it
is a valid event, a re-delivery of one (a duplicate) or an event that breaks the contract, so
whoever receives them can reconcile counts with `summarize` (keys per provider:
`expected_keys`).

Sending is a thin adapter: `send_to_bus` (PutEvents, as CXone would) or `send_to_queue`
(SendMessageBatch of the whole envelope, as an EventBridge target delivers it — the only way to
re-deliver the *same* envelope id, since PutEvents assigns a fresh id to every entry).

    python -m scripts.simulate --stack                       # the local stack's bus
    python -m scripts.simulate --bus NAME --rate 20 --duration 60
    python -m scripts.simulate --queue-url URL --count 500 --seed 7
    python -m scripts.simulate --via https                   # signed POST /events of the stack
    python -m scripts.simulate --stack --provider mix        # CXone, Genesys and Connect

Amazon Connect events go to the default bus (`--connect-bus`), where AWS publishes them. AWS
refuses PutEvents with the reserved `aws.*` sources (`aws.connect`, `aws.partner/...`), so on
AWS send Genesys or Connect traffic with --queue-url; the local stack's moto takes them on
its buses.

`send_over_https` is the push sender: batches of up to 10 events, each request signed
(X-Relay-Timestamp, X-Relay-Signature) with the stack's push secret, read from Secrets Manager.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from chalicelib.aws import error_code
from chalicelib.config import (
    CONNECT_SOURCE,
    DEFAULT_EVENT_SOURCE,
    DETAIL_TYPE_ROUTING,
    DETAIL_TYPE_STAGE,
    GENESYS_SOURCE_PREFIX,
)
from chalicelib.formats import parse_rfc3339, rfc3339, utc_now
from chalicelib.providers.genesys import dedup_key as genesys_dedup_key
from scripts.local.target import use_local_stack

ItemKind = Literal["valid", "duplicate", "invalid"]

# PutEvents and SendMessageBatch both take at most 10 entries per request.
MAX_BATCH_ENTRIES = 10
DEFAULT_STACK_FILE = ".local/stack.json"

# Agent routing states as CXone's agent state changes name them.
STATE_AVAILABLE = "Available"
STATE_BUSY = "Busy"
STATE_ACW = "ACW"
STATE_UNAVAILABLE = "Unavailable"

SKILLS = ("billing", "sales", "support", "retention", "technical")
CHANNELS = ("voice", "chat", "email", "sms")

# Ways an event can break the contract; each is something the ingest schema must reject.
INVALID_KINDS = (
    "unknown_stage",
    "missing_interaction_id",
    "missing_stage",
    "string_sequence",
    "fractional_sequence",
    "negative_sequence",
    "bad_timestamp",
    "empty_state",
    "long_interaction_id",
    "metadata_not_object",
)


@dataclass(frozen=True)
class TrafficProfile:
    """Proportions and shape of the simulated traffic.

    `duplicate_ratio` and `invalid_ratio` are fractions of all emitted items; `reorder_ratio`
    is the fraction of valid events that arrive after a newer event of their interaction;
    `transfer_ratio`, `requeue_ratio`, `routing_ratio`, `monitor_ratio` and `recorded_ratio`
    are fractions of interactions.
    """

    duplicate_ratio: float = 0.05
    reorder_ratio: float = 0.1
    invalid_ratio: float = 0.02
    transfer_ratio: float = 0.15
    requeue_ratio: float = 0.1
    routing_ratio: float = 0.3
    monitor_ratio: float = 0.05
    recorded_ratio: float = 0.2
    metadata_ratio: float = 0.5  # events (besides each interaction's first) carrying metadata
    event_id_ratio: float = 0.7  # valid events carrying the provider's own `detail.eventId`
    concurrent_interactions: int = 25
    agents: int = 50
    mean_gap_ms: float = 100.0  # simulated time between two consecutive events
    duplicate_window: int = 200  # a duplicate re-delivers one of the last N valid events
    reorder_window: int = 40  # a reordered event is swapped with one at most N positions later
    account: str = "123456789012"
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        for name in (
            "duplicate_ratio",
            "reorder_ratio",
            "invalid_ratio",
            "transfer_ratio",
            "requeue_ratio",
            "routing_ratio",
            "monitor_ratio",
            "recorded_ratio",
            "metadata_ratio",
            "event_id_ratio",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.duplicate_ratio + self.invalid_ratio > 1.0:
            raise ValueError("duplicate_ratio + invalid_ratio must not exceed 1")
        if self.concurrent_interactions < 1 or self.agents < 3:
            raise ValueError("concurrent_interactions must be >= 1 and agents >= 3")
        if self.mean_gap_ms <= 0:
            raise ValueError("mean_gap_ms must be positive")


@dataclass(frozen=True)
class TrafficItem:
    """One emitted event and what it is, so counts can be reconciled downstream."""

    kind: ItemKind
    event: dict[str, Any]
    reordered: bool = False  # arrives after a newer event of its interaction (`late`)
    invalid_reason: str | None = None  # one of INVALID_KINDS for kind == "invalid"

    @property
    def interaction_id(self) -> str | None:
        return expected_keys(self.event)[0]

    @property
    def dedup_key(self) -> tuple[str | None, str]:
        """The relay's dedup key for this event's provider, scoped by interaction."""
        return expected_keys(self.event)


def expected_keys(event: dict[str, Any]) -> tuple[str | None, str]:
    """(interaction id, dedup key) the relay derives from an event, by its provider's contract.

    CXone: `interaction.id`, and `eventId` else the envelope id. Genesys: `conversationId`, and
    the topic with the SHA-256 of the body (a re-send under a new id is the same event).
    Amazon Connect: `initialContactId` else `contactId`, and the envelope id. Worked out here
    from the contracts, independently of the relay, so counts can be checked against it.
    """
    detail = event.get("detail")
    detail = detail if isinstance(detail, dict) else {}
    source = event.get("source")
    if source == CONNECT_SOURCE:
        contact = detail.get("initialContactId") or detail.get("contactId")
        return (contact if isinstance(contact, str) else None, event["id"])
    if isinstance(source, str) and source.startswith(GENESYS_SOURCE_PREFIX):
        body = detail.get("eventBody")
        conversation = body.get("conversationId") if isinstance(body, dict) else None
        topic = detail.get("topicName")
        if isinstance(body, dict) and isinstance(topic, str):
            return (conversation, genesys_dedup_key(topic, body))
        return (conversation, event["id"])
    interaction = detail.get("interaction.id")
    return (
        interaction if isinstance(interaction, str) else None,
        detail.get("eventId") or event["id"],
    )


@dataclass(frozen=True)
class TrafficSummary:
    """Counts to reconcile against what the relay delivered and quarantined."""

    total: int  # items emitted
    valid: int  # distinct valid events: each consumer should get each exactly once
    duplicates: int  # re-deliveries of a valid event: dropped by dedup
    invalid: int  # contract violations: quarantined
    reordered: int  # valid events emitted after a newer one of their interaction: `late`
    interactions: int  # distinct interactions among the valid events
    by_detail_type: dict[str, int] = field(default_factory=dict)  # distinct valid events


class TrafficTally:
    """A running `TrafficSummary`: keeps dedup keys only, not events, for long runs."""

    def __init__(self) -> None:
        self._total = self._invalid = self._reordered = self._redeliveries = 0
        self._seen: set[tuple[str | None, str]] = set()
        self._interactions: set[str] = set()
        self._by_detail_type: Counter[str] = Counter()

    def add(self, item: TrafficItem) -> None:
        """Count one sent item; whichever copy of an event comes first counts as the event."""
        self._total += 1
        if item.kind == "invalid":
            self._invalid += 1
            return
        if item.reordered:
            self._reordered += 1
        key = item.dedup_key
        if key in self._seen:
            self._redeliveries += 1
            return
        self._seen.add(key)
        if item.interaction_id is not None:
            self._interactions.add(item.interaction_id)
        self._by_detail_type[item.event["detail-type"]] += 1

    def summary(self) -> TrafficSummary:
        return TrafficSummary(
            total=self._total,
            valid=len(self._seen),
            duplicates=self._redeliveries,
            invalid=self._invalid,
            reordered=self._reordered,
            interactions=len(self._interactions),
            by_detail_type=dict(self._by_detail_type),
        )


def summarize(items: Iterable[TrafficItem]) -> TrafficSummary:
    """Reconcile what was emitted (or sent): whichever copy of an event comes first counts."""
    tally = TrafficTally()
    for item in items:
        tally.add(item)
    return tally.summary()


class TrafficSource(Protocol):
    """Endless traffic, taken in chunks: a provider's generator or a mix of them."""

    def take(self, count: int) -> list[TrafficItem]: ...


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class _PlannedEvent:
    detail_type: str
    value: str  # the stage, or the routing state
    participant_id: str


@dataclass
class _Interaction:
    interaction_id: str
    skill: str
    channel: str
    plan: deque[_PlannedEvent]
    next_sequence: int = 0


def plan_lifecycle(rng: random.Random, profile: TrafficProfile) -> list[_PlannedEvent]:
    """The events one interaction will emit, in order: a realistic CXone contact lifecycle.

    Queued → Offered → Connected → WrapUp → Closed; an unanswered offer re-queues the
    contact, a transfer offers it to another agent (sometimes through the queue again), and
    supervisors monitor or the recorder records some calls. For some interactions the agents'
    routing state changes (Busy, ACW, Available, Unavailable) are interleaved.
    """
    customer = f"cust-{rng.randrange(10**6):06d}"
    with_routing = rng.random() < profile.routing_ratio
    agents_used: list[str] = []

    def pick_agent() -> str:
        while True:
            agent = f"agent-{rng.randrange(1, profile.agents + 1)}"
            if agent not in agents_used[-1:]:
                agents_used.append(agent)
                return agent

    def stage(name: str, participant: str) -> _PlannedEvent:
        return _PlannedEvent(DETAIL_TYPE_STAGE, name, participant)

    def routing(state: str, agent: str) -> list[_PlannedEvent]:
        return [_PlannedEvent(DETAIL_TYPE_ROUTING, state, agent)] if with_routing else []

    plan = [stage("Queued", customer)]
    agent = pick_agent()
    if rng.random() < profile.requeue_ratio:
        # The offered agent does not answer: the contact goes back to the queue.
        plan += [stage("Offered", agent), *routing(STATE_UNAVAILABLE, agent)]
        plan += [stage("Queued", customer)]
        agent = pick_agent()
    plan += [stage("Offered", agent), stage("Connected", agent), *routing(STATE_BUSY, agent)]
    if rng.random() < profile.recorded_ratio:
        plan.append(stage("Recorded", agent))
    if rng.random() < profile.monitor_ratio:
        plan.append(stage("Monitor", f"supervisor-{rng.randrange(1, 6)}"))
    if rng.random() < profile.transfer_ratio:
        plan += [stage("Transfer", agent), *routing(STATE_AVAILABLE, agent)]
        if rng.random() < 0.5:  # a blind transfer to a skill goes through the queue
            plan.append(stage("Queued", customer))
        agent = pick_agent()
        plan += [stage("Offered", agent), stage("Connected", agent), *routing(STATE_BUSY, agent)]
    plan += [stage("WrapUp", agent), *routing(STATE_ACW, agent)]
    plan += [stage("Closed", agent), *routing(STATE_AVAILABLE, agent)]
    return plan


def random_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def envelope_time(moment: datetime) -> str:
    """EventBridge's `time`: UTC, second resolution, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ProviderTraffic(ABC):
    """Endless, seeded traffic of one provider; `take(n)` returns the next n items.

    The provider's subclass makes the events (`_next_valid_event`, `_invalid_event`) and says
    which can be re-delivered and how (`_redeliverable`, `_redelivery`); this class mixes in
    duplicates, reordering and invalid events in the profile's proportions. State (what is in
    flight, the simulated clock, recent events to re-deliver) carries over between calls, so a
    long-running sender can keep taking chunks. Reordering happens within one chunk: take
    chunks of a hundred or more for it to find partners.
    """

    invalid_kinds: tuple[str, ...] = ()

    def __init__(
        self, profile: TrafficProfile | None, seed: int | None, start: datetime | None
    ) -> None:
        self.profile = profile or TrafficProfile()
        self._rng = random.Random(seed)
        self._clock = (start or utc_now()).astimezone(UTC)
        self._recent: deque[dict[str, Any]] = deque(maxlen=self.profile.duplicate_window)

    # -- public

    def take(self, count: int) -> list[TrafficItem]:
        if count < 0:
            raise ValueError("count must be >= 0")
        rng, profile = self._rng, self.profile
        kinds: list[ItemKind] = []
        for _ in range(count):
            draw = rng.random()
            if draw < profile.invalid_ratio:
                kinds.append("invalid")
            elif draw < profile.invalid_ratio + profile.duplicate_ratio:
                kinds.append("duplicate")
            else:
                kinds.append("valid")
        valid_events = [self._next_valid_event() for _ in range(kinds.count("valid"))]
        late_positions = self._reorder(valid_events)

        items: list[TrafficItem] = []
        valid_position = 0
        # Duplicates drawn before anything could be re-delivered (the generator's very first
        # events) are emitted as soon as something can be.
        owed_duplicates = 0
        for kind in kinds:
            if kind == "invalid":
                reason = rng.choice(self.invalid_kinds)
                items.append(TrafficItem("invalid", self._invalid_event(reason), False, reason))
            elif kind == "duplicate":
                owed_duplicates += 1
            else:
                event = valid_events[valid_position]
                items.append(TrafficItem("valid", event, valid_position in late_positions))
                valid_position += 1
                if self._redeliverable(event):
                    self._recent.append(event)
            while owed_duplicates and self._recent:
                original = rng.choice(self._recent)
                items.append(TrafficItem("duplicate", self._redelivery(original)))
                owed_duplicates -= 1
        # Still owed (nothing could be re-delivered): fresh events keep the count. Generated
        # last, so they come after every other event of their interaction.
        for _ in range(owed_duplicates):
            event = self._next_valid_event()
            items.append(TrafficItem("valid", event))
            if self._redeliverable(event):
                self._recent.append(event)
        return items

    # -- what a provider's subclass provides

    @abstractmethod
    def _next_valid_event(self) -> dict[str, Any]:
        """The next event of some interaction in flight, valid under the provider's contract."""

    @abstractmethod
    def _invalid_event(self, reason: str) -> dict[str, Any]:
        """An event that breaks the provider's contract in the way `reason` names."""

    @abstractmethod
    def _redeliverable(self, event: dict[str, Any]) -> bool:
        """Whether a copy of this event sent again is still recognisable as a duplicate."""

    def _redelivery(self, original: dict[str, Any]) -> dict[str, Any]:
        """The copy of an event that a re-delivery (or a provider's re-send) carries."""
        return copy.deepcopy(original)

    # -- shared

    def _reorder(self, events: list[dict[str, Any]]) -> set[int]:
        """Swap some events with the next event of their interaction; return the late positions.

        Each swap involves two positions no other swap touches and the interaction's very next
        event, so each makes exactly one event late: the older one, now emitted second (every
        provider's generator makes an interaction's order keys strictly increase).
        """
        rng, profile = self._rng, self.profile
        target = sum(1 for _ in events if rng.random() < profile.reorder_ratio)
        if target == 0:
            return set()
        interaction_of = [expected_keys(event)[0] or "" for event in events]
        candidates = list(range(len(events)))
        rng.shuffle(candidates)
        used: set[int] = set()
        late: set[int] = set()
        for position in candidates:
            if len(late) >= target:
                break
            if position in used:
                continue
            partner = _next_of_same_interaction(interaction_of, position, profile.reorder_window)
            if partner is None or partner in used:
                continue
            # Both positions belong to the same interaction, so interaction_of is unchanged.
            events[position], events[partner] = events[partner], events[position]
            used.update((position, partner))
            late.add(partner)
        return late

    def _envelope(
        self, source: str, detail_type: str, detail: dict[str, Any], moment: datetime
    ) -> dict[str, Any]:
        return {
            "version": "0",
            "id": random_uuid(self._rng),
            "detail-type": detail_type,
            "source": source,
            "account": self.profile.account,
            "time": envelope_time(moment),
            "region": self.profile.region,
            "resources": [],
            "detail": detail,
        }


class TrafficGenerator(ProviderTraffic):
    """Endless, seeded CXone traffic (the CXone profile); `take(n)` returns the next n items."""

    invalid_kinds = INVALID_KINDS

    def __init__(
        self,
        profile: TrafficProfile | None = None,
        seed: int | None = None,
        source: str = DEFAULT_EVENT_SOURCE,
        start: datetime | None = None,
    ) -> None:
        super().__init__(profile, seed, start)
        self.source = source
        self._run_tag = f"{self._rng.getrandbits(16):04x}"
        self._interactions_started = 0
        self._active: list[_Interaction] = []

    def _redeliverable(self, event: dict[str, Any]) -> bool:
        # Only events with a provider id are re-delivered, so duplicates sent through
        # PutEvents (which assigns a new envelope id) are still recognisable as duplicates.
        return "eventId" in event["detail"]

    # -- internals

    def _advance_clock(self) -> datetime:
        # At least 1 ms, so timestamps (millisecond resolution) strictly increase.
        gap_ms = max(1, round(self._rng.expovariate(1.0 / self.profile.mean_gap_ms)))
        self._clock += timedelta(milliseconds=gap_ms)
        return self._clock

    def _new_interaction(self) -> _Interaction:
        self._interactions_started += 1
        day = self._clock.strftime("%Y%m%d")
        interaction_id = f"int-{day}-{self._run_tag}-{self._interactions_started:06d}"
        return _Interaction(
            interaction_id=interaction_id,
            skill=self._rng.choice(SKILLS),
            channel=self._rng.choice(CHANNELS),
            plan=deque(plan_lifecycle(self._rng, self.profile)),
        )

    def _pick_interaction(self) -> _Interaction:
        while len(self._active) < self.profile.concurrent_interactions:
            self._active.append(self._new_interaction())
        return self._rng.choice(self._active)

    def _next_valid_event(self) -> dict[str, Any]:
        interaction = self._pick_interaction()
        planned = interaction.plan.popleft()
        if not interaction.plan:
            self._active.remove(interaction)
        moment = self._advance_clock()
        key = "stage" if planned.detail_type == DETAIL_TYPE_STAGE else "state"
        detail: dict[str, Any] = {
            "interaction.id": interaction.interaction_id,
            "participant.id": planned.participant_id,
            key: planned.value,
            "sequence": interaction.next_sequence,
            "timestamp": rfc3339(moment),
        }
        if self._rng.random() < self.profile.event_id_ratio:
            detail["eventId"] = random_uuid(self._rng)
        if interaction.next_sequence == 0 or self._rng.random() < self.profile.metadata_ratio:
            detail["metadata"] = {"skill": interaction.skill, "channel": interaction.channel}
        interaction.next_sequence += 1
        return self._envelope(self.source, planned.detail_type, detail, moment)

    def _invalid_event(self, reason: str) -> dict[str, Any]:
        """An event as CXone might send it after schema drift or a bug: it breaks the contract."""
        interaction = self._pick_interaction()
        moment = self._clock  # does not advance the clock nor take a sequence number
        detail: dict[str, Any] = {
            "interaction.id": interaction.interaction_id,
            "participant.id": f"agent-{self._rng.randrange(1, self.profile.agents + 1)}",
            "stage": "Connected",
            "sequence": interaction.next_sequence,
            "timestamp": rfc3339(moment),
        }
        detail_type = DETAIL_TYPE_STAGE
        if reason == "unknown_stage":
            detail["stage"] = "Escalated"
        elif reason == "missing_interaction_id":
            del detail["interaction.id"]
        elif reason == "missing_stage":
            del detail["stage"]
        elif reason == "string_sequence":
            detail["sequence"] = str(detail["sequence"])
        elif reason == "fractional_sequence":
            detail["sequence"] = detail["sequence"] + 0.5
        elif reason == "negative_sequence":
            detail["sequence"] = -1
        elif reason == "bad_timestamp":
            detail["timestamp"] = moment.strftime("%d/%m/%Y %H:%M")
        elif reason == "empty_state":
            detail_type = DETAIL_TYPE_ROUTING
            del detail["stage"]
            detail["state"] = ""
        elif reason == "long_interaction_id":
            detail["interaction.id"] = "int-" + "x" * 70
        elif reason == "metadata_not_object":
            detail["metadata"] = ["skill", interaction.skill]
        else:
            raise ValueError(f"unknown invalid kind {reason!r}")
        return self._envelope(self.source, detail_type, detail, moment)


def _next_of_same_interaction(interaction_of: list[str], position: int, window: int) -> int | None:
    end = min(len(interaction_of), position + 1 + window)
    for later in range(position + 1, end):
        if interaction_of[later] == interaction_of[position]:
            return later
    return None


def generate_traffic(
    count: int,
    profile: TrafficProfile | None = None,
    seed: int | None = None,
    source: str = DEFAULT_EVENT_SOURCE,
    start: datetime | None = None,
) -> list[TrafficItem]:
    """`count` items of simulated CXone traffic (valid, duplicate and invalid events)."""
    return TrafficGenerator(profile, seed, source, start).take(count)


# --------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class FailedSend:
    """An event that could not be sent after every attempt; `index` is its input position."""

    index: int
    event: dict[str, Any]
    error_code: str
    error_message: str


@dataclass(frozen=True)
class SendResult:
    sent: int
    failed: list[FailedSend] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


# Index → (error code, error message) for the entries of one request that failed.
_RequestFailures = dict[int, tuple[str, str]]


def _send_with_retries(
    events: Sequence[dict[str, Any]],
    send_chunk: Callable[[list[int]], _RequestFailures],
    max_attempts: int,
    backoff_seconds: float,
    sleep: Callable[[float], None],
) -> SendResult:
    """Send in chunks of 10; re-send only the failed entries, with a growing pause."""
    sent = 0
    failed: list[FailedSend] = []
    for chunk_start in range(0, len(events), MAX_BATCH_ENTRIES):
        pending = list(range(chunk_start, min(chunk_start + MAX_BATCH_ENTRIES, len(events))))
        failures: _RequestFailures = {}
        for attempt in range(max_attempts):
            if attempt:
                sleep(backoff_seconds * 2 ** (attempt - 1))
            failures = send_chunk(pending)
            sent += len(pending) - len(failures)
            pending = [index for index in pending if index in failures]
            if not pending:
                break
        failed.extend(
            FailedSend(index, events[index], *failures[index]) for index in sorted(pending)
        )
    return SendResult(sent=sent, failed=failed)


def _whole_request_failed(indices: list[int], error: Exception) -> _RequestFailures:
    return {index: (error_code(error), str(error)) for index in indices}


def _parse_envelope_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


def put_events_entry(event: dict[str, Any], bus_name: str) -> dict[str, Any]:
    """The PutEvents entry that makes EventBridge deliver an event like this one."""
    entry: dict[str, Any] = {
        "Source": event["source"],
        "DetailType": event["detail-type"],
        "Detail": json.dumps(event.get("detail", {}), separators=(",", ":")),
        "Resources": list(event.get("resources") or []),
        "EventBusName": bus_name,
    }
    moment = _parse_envelope_time(event.get("time"))
    if moment is not None:
        entry["Time"] = moment
    return entry


BusOf = Callable[[dict[str, Any]], str]


def bus_by_source(bus: str, connect_bus: str) -> BusOf:
    """Amazon Connect events on `connect_bus` (AWS publishes them on the default bus), the
    rest on `bus` (CXone's bus; locally also Genesys's, see scripts.local.stack)."""
    return lambda event: connect_bus if event.get("source") == CONNECT_SOURCE else bus


def send_to_bus(
    events_client: Any,
    bus: str | BusOf,
    events: Iterable[dict[str, Any]],
    *,
    max_attempts: int = 4,
    backoff_seconds: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> SendResult:
    """PutEvents in chunks of 10, retrying failed entries; what still fails is reported.

    `bus` is a bus name, or a function of the event (`bus_by_source`). EventBridge gives every
    entry a new envelope id: a duplicate sent this way is recognisable only by its provider's
    key (CXone's `detail.eventId`, Genesys's content key); Amazon Connect's generator makes
    no duplicates for this path.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    batch = list(events)
    bus_of: BusOf = (lambda _: bus) if isinstance(bus, str) else bus

    def send_chunk(indices: list[int]) -> _RequestFailures:
        entries = [put_events_entry(batch[index], bus_of(batch[index])) for index in indices]
        try:
            response = events_client.put_events(Entries=entries)
        except (BotoCoreError, ClientError) as error:
            return _whole_request_failed(indices, error)
        if not response.get("FailedEntryCount"):
            return {}
        # Result entries are in request order; a failed one has an ErrorCode and no EventId.
        return {
            index: (result.get("ErrorCode", "Unknown"), result.get("ErrorMessage", ""))
            for index, result in zip(indices, response.get("Entries", []), strict=False)
            if result.get("ErrorCode") or not result.get("EventId")
        }

    return _send_with_retries(batch, send_chunk, max_attempts, backoff_seconds, sleep)


def send_to_queue(
    sqs_client: Any,
    queue_url: str,
    events: Iterable[dict[str, Any]],
    *,
    max_attempts: int = 4,
    backoff_seconds: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> SendResult:
    """SendMessageBatch of the full envelopes: the body an EventBridge → SQS target delivers.

    A duplicate keeps its envelope id, exactly like an EventBridge or SQS re-delivery.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    batch = list(events)

    def send_chunk(indices: list[int]) -> _RequestFailures:
        entries = [
            {"Id": str(position), "MessageBody": json.dumps(batch[index])}
            for position, index in enumerate(indices)
        ]
        try:
            response = sqs_client.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (BotoCoreError, ClientError) as error:
            return _whole_request_failed(indices, error)
        failures = {
            indices[int(entry["Id"])]: (entry.get("Code", "Unknown"), entry.get("Message", ""))
            for entry in response.get("Failed", [])
        }
        # An entry reported neither way was not confirmed: treat it as failed, never as sent.
        confirmed = {indices[int(entry["Id"])] for entry in response.get("Successful", [])}
        for index in indices:
            if index not in confirmed and index not in failures:
                failures[index] = ("Unconfirmed", "not in the response's Successful entries")
        return failures

    return _send_with_retries(batch, send_chunk, max_attempts, backoff_seconds, sleep)


PUSH_TIMEOUT_SECONDS = 10
# POST /events refuses a signature it has seen; a retry one second later carries a new
# timestamp, hence a new signature, even when its body is the same.
PUSH_RETRY_BACKOFF_SECONDS = 1.0
# Rejections that are the relay's verdict on the event itself (like quarantine on the bus path),
# not a failure to send it: re-sending would be rejected again.
PUSH_VERDICTS = frozenset({"invalid", "unparseable"})


def send_over_https(
    http: Any,
    url: str,
    secret: str,
    events: Iterable[dict[str, Any]],
    *,
    max_attempts: int = 4,
    backoff_seconds: float = PUSH_RETRY_BACKOFF_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> SendResult:
    """Signed POST /events of up to 10 events per request (`http`: a requests.Session).

    An event the relay rejects as invalid counts as sent (it was delivered to the relay, which
    refused it, as the bus path quarantines it); a refused request, an HTTP error or a bus
    failure of one event is a send failure and is retried, signed afresh.
    """
    import requests

    from chalicelib.push.signing import signed_headers

    batch = list(events)

    def send_chunk(indices: list[int]) -> _RequestFailures:
        body = json.dumps({"events": [batch[index] for index in indices]}).encode("utf-8")
        try:
            response = http.post(
                url,
                data=body,
                headers=signed_headers(secret, body, clock()),
                timeout=PUSH_TIMEOUT_SECONDS,
            )
        except requests.RequestException as error:
            return _whole_request_failed(indices, error)
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code != 200:
            message = str(answer.get("Message", "")) if isinstance(answer, dict) else ""
            return {index: (f"HTTP {response.status_code}", message) for index in indices}
        results = answer.get("results", []) if isinstance(answer, dict) else []
        by_position = {r.get("index"): r for r in results if isinstance(r, dict)}
        failures: _RequestFailures = {}
        for position, index in enumerate(indices):
            result = by_position.get(position)
            if result is None:
                failures[index] = ("Unconfirmed", "not in the response's results")
            elif result.get("status") != "accepted" and result.get("reason") not in PUSH_VERDICTS:
                failures[index] = (str(result.get("reason", "rejected")), json.dumps(result))
        return failures

    return _send_with_retries(batch, send_chunk, max_attempts, backoff_seconds, sleep)


# --------------------------------------------------------------------------- paced runs

Sender = Callable[[Sequence[dict[str, Any]]], SendResult]


@dataclass(frozen=True)
class TrafficRun:
    """What a paced run sent: `summary` covers only the items that were sent."""

    summary: TrafficSummary
    failed: list[FailedSend]
    elapsed_seconds: float

    @property
    def sent(self) -> int:
        return self.summary.total


def chunk_size_for_rate(rate: float) -> int:
    """Requests of up to 10 entries, but small enough that low rates are not bursty."""
    return max(1, min(MAX_BATCH_ENTRIES, int(rate)))


def run_traffic(
    send: Sender,
    generator: TrafficSource,
    *,
    rate: float,
    count: int | None = None,
    duration: float | None = None,
    on_sent: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TrafficRun:
    """Send `count` items, or for `duration` seconds, at about `rate` events per second.

    Pacing waits on `stop` (no busy loop), so setting it from another thread ends the run at
    once. `on_sent(sent, failed)` is called after every request.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    if count is None and duration is None:
        raise ValueError("give a count or a duration")
    stop = stop or threading.Event()
    started = clock()
    deadline = started + duration if duration is not None else None
    request_size = chunk_size_for_rate(rate)
    # Generate in blocks large enough for reordering to find partners within a block.
    block_size = max(200, request_size)
    tally = TrafficTally()
    failed: list[FailedSend] = []
    emitted = 0
    pending: deque[TrafficItem] = deque()
    while not stop.is_set():
        if count is not None and emitted >= count:
            break
        if deadline is not None and clock() >= deadline:
            break
        if not pending:
            block = block_size if count is None else min(block_size, count - emitted)
            pending.extend(generator.take(block))
        size = request_size if count is None else min(request_size, count - emitted)
        request = [pending.popleft() for _ in range(min(size, len(pending)))]
        # Wait until this request's scheduled time: item n goes out at started + n / rate.
        delay = started + emitted / rate - clock()
        if delay > 0 and stop.wait(delay):
            break
        if deadline is not None and clock() >= deadline:
            break  # the wait ran into the end of the run: this request is not sent
        result = send([item.event for item in request])
        failed_indices = {failure.index for failure in result.failed}
        for position, item in enumerate(request):
            if position not in failed_indices:
                tally.add(item)
        failed.extend(result.failed)
        emitted += len(request)
        if on_sent is not None:
            on_sent(emitted - len(failed), len(failed))
    return TrafficRun(tally.summary(), failed, clock() - started)


# --------------------------------------------------------------------------- CLI


@dataclass(frozen=True)
class StackInfo:
    """The part of the local stack's `.local/stack.json` the simulator needs."""

    aws_endpoint_url: str | None
    region: str | None
    event_bus_name: str | None
    event_source: str | None
    ingest_queue_url: str | None
    push_url: str | None = None
    push_secret_name: str | None = None
    default_event_bus_name: str | None = None


def load_stack(path: Path) -> StackInfo:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path} not found: start the local stack first (make run)") from None
    except json.JSONDecodeError as error:
        raise SystemExit(f"{path} is not valid JSON: {error}") from None
    return StackInfo(
        aws_endpoint_url=data.get("aws_endpoint_url"),
        region=data.get("region"),
        event_bus_name=data.get("event_bus_name"),
        event_source=data.get("event_source"),
        ingest_queue_url=data.get("ingest_queue_url"),
        push_url=(data.get("push") or {}).get("url"),
        push_secret_name=(data.get("push") or {}).get("secret_name"),
        default_event_bus_name=data.get("default_event_bus_name"),
    )


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.simulate",
        description="Send simulated contact-center traffic (CXone, Genesys Cloud, Amazon "
        "Connect) to an EventBridge bus or SQS queue.",
    )
    parser.add_argument(
        "--provider",
        choices=("cxone", "genesys", "connect", "mix"),
        default="cxone",
        help="whose events (default cxone); mix: the three interleaved",
    )
    parser.add_argument(
        "--connect-bus",
        help="bus for Amazon Connect events (default: the stack's default bus, else 'default')",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--bus", help="event bus name (PutEvents)")
    target.add_argument("--queue-url", help="SQS queue URL (the envelope, as a bus target gets it)")
    target.add_argument(
        "--dry-run", action="store_true", help="print the events as JSON lines, send nothing"
    )
    parser.add_argument(
        "--via",
        choices=("bus", "queue", "https"),
        help="with the local stack: its bus (default), its ingest queue, or its signed "
        "POST /events (https; reads the stack file even without --stack)",
    )
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--count", type=_count, help="events to send (default 200)")
    amount.add_argument("--duration", type=_positive, help="seconds to send for")
    parser.add_argument("--rate", type=_positive, default=50.0, help="events per second")
    parser.add_argument("--seed", type=int, help="same seed, same events (ids included)")
    defaults = TrafficProfile()
    for name in (
        "duplicate_ratio",
        "reorder_ratio",
        "invalid_ratio",
        "transfer_ratio",
        "requeue_ratio",
        "routing_ratio",
    ):
        parser.add_argument(
            "--" + name.replace("_", "-"), type=_ratio, default=getattr(defaults, name)
        )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=defaults.concurrent_interactions,
        help="interactions in flight at once",
    )
    parser.add_argument("--source", help=f"event source (default {DEFAULT_EVENT_SOURCE})")
    parser.add_argument("--endpoint-url", help="AWS endpoint (default: AWS_ENDPOINT_URL)")
    parser.add_argument("--region", help="AWS region")
    parser.add_argument(
        "--stack",
        nargs="?",
        const=DEFAULT_STACK_FILE,
        help=f"read bus, endpoint and region from the local stack's file ({DEFAULT_STACK_FILE}; "
        "the default while the local stack runs and no --bus/--queue-url/--endpoint-url is given)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser


def _summary_table(
    run: TrafficRun, destination: str, invalid_outcome: str = "quarantined", provider: str = "cxone"
) -> Any:
    from rich.table import Table

    summary = run.summary
    table = Table(title=f"Simulated {provider} traffic → {destination}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("expect at the relay")
    table.add_row("sent", str(summary.total), "")
    table.add_row("distinct valid events", str(summary.valid), "delivered once per consumer")
    for detail_type, number in sorted(summary.by_detail_type.items()):
        table.add_row(f"  {detail_type}", str(number), "")
    table.add_row("duplicates", str(summary.duplicates), "dropped as duplicates")
    table.add_row("reordered", str(summary.reordered), "delivered with late: true")
    table.add_row("invalid", str(summary.invalid), invalid_outcome)
    table.add_row("interactions", str(summary.interactions), "")
    table.add_row("failed to send", str(len(run.failed)), "", style="red" if run.failed else None)
    rate = summary.total / run.elapsed_seconds if run.elapsed_seconds > 0 else 0.0
    table.add_row("elapsed", f"{run.elapsed_seconds:.1f} s", f"{rate:.1f} events/s")
    return table


def _summary_document(run: TrafficRun, destination: str) -> dict[str, Any]:
    """The summary table's figures, for --json."""
    summary = run.summary
    return {
        "destination": destination,
        "sent": summary.total,
        "valid": summary.valid,
        "by_detail_type": dict(summary.by_detail_type),
        "duplicates": summary.duplicates,
        "reordered": summary.reordered,
        "invalid": summary.invalid,
        "interactions": summary.interactions,
        "failed": [
            {"id": f.event.get("id"), "error_code": f.error_code, "error_message": f.error_message}
            for f in run.failed
        ],
        "elapsed_seconds": round(run.elapsed_seconds, 3),
    }


def _profile_from_args(args: argparse.Namespace) -> TrafficProfile:
    return TrafficProfile(
        duplicate_ratio=args.duplicate_ratio,
        reorder_ratio=args.reorder_ratio,
        invalid_ratio=args.invalid_ratio,
        transfer_ratio=args.transfer_ratio,
        requeue_ratio=args.requeue_ratio,
        routing_ratio=args.routing_ratio,
        concurrent_interactions=args.concurrency,
        # Simulated time runs at the sending rate, so timestamps track the wall clock.
        mean_gap_ms=1000.0 / args.rate,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The local stack while `make run` is up (--stack, or no target flag), else AWS's chain.
    local = use_local_stack(
        "scripts.simulate",
        stack_file=args.stack,
        explicit_target=bool(args.bus or args.queue_url or args.endpoint_url or args.dry_run),
    )
    args.stack = str(local.stack_file) if local else None
    stack = load_stack(Path(args.stack)) if args.stack else None
    endpoint_url = args.endpoint_url or (stack.aws_endpoint_url if stack else None)
    region = args.region or (stack.region if stack else None)
    source = args.source or (stack.event_source if stack else None) or DEFAULT_EVENT_SOURCE
    try:
        profile = _profile_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    if args.via == "https" and args.provider in ("connect", "mix"):
        parser.error(
            "POST /events puts events on the relay's own bus, where no Amazon Connect rule "
            "listens: send Connect traffic to the bus (--stack) or the queue (--via queue)"
        )
    from scripts.traffic.providers import make_traffic

    generator = make_traffic(
        args.provider,
        profile,
        args.seed,
        cxone_source=source,
        # Only a send to the queue (or a print) can repeat an envelope id, as EventBridge does.
        same_id_redeliveries=bool(args.dry_run or args.queue_url or args.via == "queue"),
    )
    count: int | None = args.count
    if count is None and args.duration is None:
        count = 200
    expected = count if count is not None else round(args.rate * args.duration)

    if args.dry_run:
        try:
            for item in generator.take(expected):
                print(json.dumps(item.event))
        except BrokenPipeError:  # e.g. piped into `head`
            sys.stderr.close()
        return 0

    if args.via == "https":
        if args.bus or args.queue_url:
            parser.error("--via https sends to the stack's POST /events: drop --bus/--queue-url")
        stack = stack or load_stack(Path(DEFAULT_STACK_FILE))
        endpoint_url = args.endpoint_url or stack.aws_endpoint_url
        region = args.region or stack.region
        send, destination = _make_https_sender(stack, endpoint_url, region)
    else:
        queue_url = args.queue_url
        if args.via == "queue" and not queue_url:
            queue_url = stack.ingest_queue_url if stack else None
            if not queue_url:
                parser.error("--via queue needs --stack (or give --queue-url URL)")
        bus = args.bus or (stack.event_bus_name if stack and not queue_url else None)
        connect_bus = (
            args.connect_bus or (stack.default_event_bus_name if stack else None) or "default"
        )
        if args.provider == "connect":
            bus = bus or connect_bus
        if not bus and not queue_url:
            parser.error("give --bus NAME, --queue-url URL or --stack")
        send, destination = _make_sender(bus, connect_bus, queue_url, endpoint_url, region)
    run, interrupted = _run_with_progress(
        send, generator, args.rate, count, args.duration, expected
    )

    from rich.console import Console

    console = Console()
    invalid_outcome = "rejected by POST /events" if args.via == "https" else "quarantined"
    if args.json:
        print(json.dumps(_summary_document(run, destination)))
        return 130 if interrupted else (1 if run.failed else 0)
    console.print(_summary_table(run, destination, invalid_outcome, args.provider))
    for failure in run.failed[:10]:
        console.print(
            f"[red]not sent[/red] {failure.event.get('id')}: "
            f"{failure.error_code} {failure.error_message[:200]}"
        )
    if len(run.failed) > 10:
        console.print(f"[red]… and {len(run.failed) - 10} more not sent[/red]")
    if interrupted:
        return 130
    return 1 if run.failed else 0


def _make_sender(
    bus: str | None,
    connect_bus: str,
    queue_url: str | None,
    endpoint_url: str | None,
    region: str | None,
) -> tuple[Sender, str]:
    import boto3
    from botocore.exceptions import NoRegionError

    # endpoint_url None lets boto3 apply AWS_ENDPOINT_URL itself.
    client_kwargs: dict[str, Any] = {"endpoint_url": endpoint_url, "region_name": region}
    try:
        if bus:
            events_client = boto3.client("events", **client_kwargs)
            route = bus_by_source(bus, connect_bus)
            destination = f"bus {bus}" + (
                f" (Amazon Connect: {connect_bus})" * (bus != connect_bus)
            )
            return (lambda events: send_to_bus(events_client, route, events)), destination
        assert queue_url is not None
        sqs_client = boto3.client("sqs", **client_kwargs)
        return (lambda events: send_to_queue(sqs_client, queue_url, events)), f"queue {queue_url}"
    except NoRegionError:
        raise SystemExit("no AWS region: set AWS_REGION or pass --region / --stack") from None


def _make_https_sender(
    stack: StackInfo, endpoint_url: str | None, region: str | None
) -> tuple[Sender, str]:
    """Signed POST /events of the local stack, with its secret from Secrets Manager."""
    import boto3
    import requests
    from botocore.exceptions import BotoCoreError, ClientError

    if not stack.push_url or not stack.push_secret_name:
        raise SystemExit(
            "the stack file has no push endpoint: restart the local stack (make run) so that it "
            "writes stack.json with its POST /events url and secret name"
        )
    session = boto3.Session(region_name=region)
    if session.get_credentials() is None:
        # The local stack's moto accepts any credentials; never the case against real AWS,
        # where the default chain finds the caller's own.
        session = boto3.Session(
            region_name=region, aws_access_key_id="local", aws_secret_access_key="local"
        )
    try:
        secret = session.client("secretsmanager", endpoint_url=endpoint_url).get_secret_value(
            SecretId=stack.push_secret_name
        )["SecretString"]
    except (BotoCoreError, ClientError) as error:
        raise SystemExit(
            f"cannot read the push secret {stack.push_secret_name}: {type(error).__name__}; "
            "is the local stack running?"
        ) from None
    http = requests.Session()
    url = stack.push_url
    return (lambda events: send_over_https(http, url, secret, events)), f"POST {url}"


def _run_with_progress(
    send: Sender,
    generator: TrafficSource,
    rate: float,
    count: int | None,
    duration: float | None,
    expected: int,
) -> tuple[TrafficRun, bool]:
    """Run the sender in a worker thread so Ctrl-C stops it cleanly and keeps its counts."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    stop = threading.Event()
    progress = Progress(
        TextColumn("[bold]sending[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    task = progress.add_task("send", total=expected, failed=0)
    outcome: list[TrafficRun | BaseException] = []

    def on_sent(sent: int, failed: int) -> None:
        progress.update(task, completed=sent + failed, failed=failed)

    def work() -> None:
        try:
            outcome.append(
                run_traffic(
                    send,
                    generator,
                    rate=rate,
                    count=count,
                    duration=duration,
                    on_sent=on_sent,
                    stop=stop,
                )
            )
        except BaseException as error:  # handed to the main thread, which reports it
            outcome.append(error)

    interrupted = False
    with progress:
        worker = threading.Thread(target=work, name="simulate-sender", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(timeout=0.5)
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
            worker.join()
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result, interrupted

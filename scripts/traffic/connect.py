"""Simulated Amazon Connect contact events (source `aws.connect`, the account's default bus).

Each contact goes through its lifecycle, INITIATED → CONNECTED_TO_SYSTEM → QUEUED →
CONNECTED_TO_AGENT → DISCONNECTED → COMPLETED, with CONTACT_DATA_UPDATED when a flow sets
attributes. A transfer creates a new contact (`initiationMethod` TRANSFER) whose
`initialContactId` and `previousContactId` name the first one; the first is then disconnected
and completed, the new one queued and connected to another agent. Every event carries the
timestamps its contact has reached so far, to the second (as Connect writes them, `.000Z`),
and, as live events do, some carry fewer: an event may lack its own timestamp, and a
DISCONNECTED may lack every one (the relay then orders it by the envelope `time`, same
second, then the lifecycle rank).

Connect has no event id of its own: the relay deduplicates on the EventBridge id. A duplicate
is therefore only what EventBridge's at-least-once delivery makes, the same envelope again,
which only a send to the queue can reproduce (PutEvents gives every entry a new id). Without
`same_id_redeliveries` the generator makes no duplicates; the ones the profile asks for are
fresh events instead, so counts still add up.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chalicelib.config import CONNECT_DETAIL_TYPE, CONNECT_SOURCE
from scripts.traffic.chains import ChainClock
from scripts.traffic.simulate import ProviderTraffic, TrafficProfile, random_uuid

INVALID_KINDS = (
    "missing_contact_id",
    "missing_event_type",
    "bad_timestamp",
    "agent_info_not_object",
)
CHANNELS = ("VOICE", "VOICE", "VOICE", "CHAT", "TASK")
QUEUES = 4
# Of contacts (transfers: the profile's transfer_ratio), events and DISCONNECTED events.
DATA_UPDATED_RATIO = 0.3
MISSING_OWN_TIMESTAMP_RATIO = 0.1
DISCONNECTED_WITHOUT_TIMESTAMPS_RATIO = 0.2
# Seconds between two events of one chain: at least one, so every event of an interaction
# is in a later second than the one before (timestamps have one-second resolution).
MIN_GAP_SECONDS = 1

# Where each event type writes its own timestamp in `detail`.
OWN_TIMESTAMP: dict[str, tuple[str, ...]] = {
    "INITIATED": ("initiationTimestamp",),
    "CONNECTED_TO_SYSTEM": ("connectedToSystemTimestamp",),
    "QUEUED": ("queueInfo", "enqueueTimestamp"),
    "CONNECTED_TO_AGENT": ("agentInfo", "connectedToAgentTimestamp"),
    "DISCONNECTED": ("disconnectTimestamp",),
    "COMPLETED": ("agentInfo", "afterContactWorkEndTimestamp"),
}
TIMESTAMP_FIELDS = ("initiationTimestamp", "connectedToSystemTimestamp", "disconnectTimestamp")
NESTED_TIMESTAMP_FIELDS = {
    "queueInfo": ("enqueueTimestamp",),
    "agentInfo": (
        "connectedToAgentTimestamp",
        "afterContactWorkStartTimestamp",
        "afterContactWorkEndTimestamp",
    ),
}


def connect_timestamp(moment: datetime) -> str:
    """Connect's timestamps: UTC, whole seconds, written with `.000Z`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def without_timestamps(detail: dict[str, Any]) -> dict[str, Any]:
    """A contact event's detail with every timestamp removed, as some live DISCONNECTEDs come."""
    stripped = {key: value for key, value in detail.items() if key not in TIMESTAMP_FIELDS}
    for name, keys in NESTED_TIMESTAMP_FIELDS.items():
        if isinstance(stripped.get(name), dict):
            stripped[name] = {k: v for k, v in stripped[name].items() if k not in keys}
    return stripped


@dataclass
class _Contact:
    """One Connect contact: the detail fields it has reached so far."""

    contact_id: str
    channel: str
    initiation_method: str
    initial_contact_id: str | None = None
    previous_contact_id: str | None = None
    state: dict[str, Any] = field(default_factory=dict)  # timestamps, queueInfo, agentInfo


@dataclass
class _ContactChain:
    """A contact and its transfers: one interaction, its events planned in order."""

    plan: deque[tuple[_Contact, str]]
    department: str


class ConnectTrafficGenerator(ProviderTraffic):
    """Endless, seeded Amazon Connect contact events, contact chains interleaved by time."""

    invalid_kinds = INVALID_KINDS

    def __init__(
        self,
        profile: TrafficProfile | None = None,
        seed: int | None = None,
        start: datetime | None = None,
        *,
        same_id_redeliveries: bool = False,
        instance_id: str = "1a1a1a1a-0000-4000-8000-000000000001",
    ) -> None:
        super().__init__(profile, seed, start)
        self.same_id_redeliveries = same_id_redeliveries
        arn_base = f"arn:aws:connect:{self.profile.region}:{self.profile.account}"
        self.instance_arn = f"{arn_base}:instance/{instance_id}"
        self._instance_id = instance_id
        # Chains step seconds apart; enough of them in flight that the stream keeps the rate.
        self._mean_gap_seconds = max(
            MIN_GAP_SECONDS, self.profile.concurrent_interactions * self.profile.mean_gap_ms / 1000
        )
        self._chains: ChainClock[_ContactChain] = ChainClock(
            self.profile.concurrent_interactions,
            self._clock.replace(microsecond=0),
            lambda _: self._new_chain(),
        )

    # -- the contacts

    def _new_contact(self, channel: str, method: str, initial: _Contact | None) -> _Contact:
        contact_id = random_uuid(self._rng)
        if initial is None:
            return _Contact(contact_id, channel, method)
        return _Contact(
            contact_id,
            channel,
            method,
            initial_contact_id=initial.initial_contact_id or initial.contact_id,
            previous_contact_id=initial.contact_id,
        )

    def _new_chain(self) -> _ContactChain:
        rng = self._rng
        channel = rng.choice(CHANNELS)
        method = "API" if channel == "TASK" else "INBOUND"
        first = self._new_contact(channel, method, None)
        plan: list[tuple[_Contact, str]] = [(first, "INITIATED"), (first, "CONNECTED_TO_SYSTEM")]
        if rng.random() < DATA_UPDATED_RATIO:
            plan.append((first, "CONTACT_DATA_UPDATED"))
        plan += [(first, "QUEUED"), (first, "CONNECTED_TO_AGENT")]
        if rng.random() < self.profile.transfer_ratio:
            # The agent transfers: a new contact starts while the first one is disconnected
            # and its agent does after-contact work.
            second = self._new_contact(channel, "TRANSFER", first)
            plan += [(second, "INITIATED"), (first, "DISCONNECTED"), (first, "COMPLETED")]
            plan += [(second, "QUEUED"), (second, "CONNECTED_TO_AGENT")]
            plan += [(second, "DISCONNECTED"), (second, "COMPLETED")]
        else:
            plan += [(first, "DISCONNECTED"), (first, "COMPLETED")]
        return _ContactChain(deque(plan), rng.choice(("billing", "sales", "support")))

    def _gap(self) -> timedelta:
        seconds = round(self._rng.expovariate(1.0 / self._mean_gap_seconds))
        return timedelta(seconds=max(MIN_GAP_SECONDS, seconds))

    def _arn(self, kind: str, number: int) -> str:
        return f"{self.instance_arn}/{kind}/{number:08x}-0000-4000-8000-{number:012x}"

    def _advance(self, contact: _Contact, event_type: str, moment: datetime) -> None:
        """What the contact reaches with this event: its timestamp, its queue, its agent."""
        stamp = connect_timestamp(moment)
        state = contact.state
        if event_type == "INITIATED":
            state["initiationTimestamp"] = stamp
        elif event_type == "CONNECTED_TO_SYSTEM":
            state["connectedToSystemTimestamp"] = stamp
        elif event_type == "QUEUED":
            state["queueInfo"] = {
                "queueType": "STANDARD",
                "queueArn": self._arn("queue", self._rng.randrange(1, QUEUES + 1)),
                "enqueueTimestamp": stamp,
            }
        elif event_type == "CONNECTED_TO_AGENT":
            agent = self._arn("agent", self._rng.randrange(1, self.profile.agents + 1))
            state["agentInfo"] = {"agentArn": agent, "connectedToAgentTimestamp": stamp}
        elif event_type == "DISCONNECTED":
            state["disconnectTimestamp"] = stamp
            if "agentInfo" in state:
                state["agentInfo"] = {**state["agentInfo"], "afterContactWorkStartTimestamp": stamp}
        elif event_type == "COMPLETED" and "agentInfo" in state:
            state["agentInfo"] = {**state["agentInfo"], "afterContactWorkEndTimestamp": stamp}

    def _detail(self, contact: _Contact, event_type: str, department: str) -> dict[str, Any]:
        detail: dict[str, Any] = {"contactId": contact.contact_id}
        if contact.initial_contact_id:
            detail["initialContactId"] = contact.initial_contact_id
            detail["previousContactId"] = contact.previous_contact_id
        detail |= {
            "channel": contact.channel,
            "instanceArn": self.instance_arn,
            "initiationMethod": contact.initiation_method,
            "eventType": event_type,
        }
        detail |= {key: dict(v) if isinstance(v, dict) else v for key, v in contact.state.items()}
        detail["tags"] = {"aws:connect:instanceId": self._instance_id, "department": department}
        return detail

    def _drop_timestamps(self, detail: dict[str, Any]) -> dict[str, Any]:
        """Real events often carry fewer timestamps than they could."""
        rng = self._rng
        if detail["eventType"] == "DISCONNECTED" and rng.random() < (
            DISCONNECTED_WITHOUT_TIMESTAMPS_RATIO
        ):
            return without_timestamps(detail)
        own = OWN_TIMESTAMP.get(detail["eventType"])
        if own and rng.random() < MISSING_OWN_TIMESTAMP_RATIO:
            holder = detail
            for key in own[:-1]:
                holder = holder[key]
            holder.pop(own[-1], None)
        return detail

    # -- ProviderTraffic

    def _next_valid_event(self) -> dict[str, Any]:
        moment, chain = self._chains.next_due()
        contact, event_type = chain.plan.popleft()
        if chain.plan:
            self._chains.reschedule(chain, moment, self._gap())
        self._clock = moment
        self._advance(contact, event_type, moment)
        detail = self._drop_timestamps(self._detail(contact, event_type, chain.department))
        event = self._envelope(CONNECT_SOURCE, CONNECT_DETAIL_TYPE, detail, moment)
        event["resources"] = [f"{self.instance_arn}/contact/{contact.contact_id}"]
        return event

    def _redeliverable(self, event: dict[str, Any]) -> bool:
        return self.same_id_redeliveries

    def _invalid_event(self, reason: str) -> dict[str, Any]:
        """A contact event the Connect profile refuses, as a broken integration might send."""
        moment = self._clock
        contact = self._new_contact("VOICE", "INBOUND", None)
        self._advance(contact, "INITIATED", moment)
        detail = self._detail(contact, "INITIATED", "support")
        if reason == "missing_contact_id":
            del detail["contactId"]
        elif reason == "missing_event_type":
            del detail["eventType"]
        elif reason == "bad_timestamp":
            detail["initiationTimestamp"] = moment.strftime("%d/%m/%Y %H:%M")
        elif reason == "agent_info_not_object":
            detail["agentInfo"] = "agent-7"
        else:
            raise ValueError(f"unknown invalid kind {reason!r}")
        # Still a contact event of aws.connect: the rule routes it, the profile refuses it.
        return self._envelope(CONNECT_SOURCE, CONNECT_DETAIL_TYPE, detail, moment)

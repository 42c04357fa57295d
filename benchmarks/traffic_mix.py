"""The realistic traffic mix: real payload shapes and sizes from three providers.

The small-event mix (scripts.traffic.simulate) is CXone alone, about 600 bytes an event. Real
contact-center traffic is bigger and burstier; this mix is built from the shapes providers
really send:

- Genesys Cloud conversation events: the captured notifications in tests/fixtures/genesys/
  (about 1.2-2.1 KB each), re-keyed per conversation: flow.outcome, acd.start, acd.end,
  user.start, user.end, acw, customer.end;
- Genesys transcription streams (`v2.conversations.{id}.transcription`), the captured shape
  with its utterances grown to a body size drawn log-uniformly from 1.5 to 10 KB (real
  notifications run in that range), words with their confidences and offsets, the
  transcript repeated as `decoratedTranscript`/`decoratedWords` as Genesys sends it;
- Amazon Connect contact events (source `aws.connect`, the fields of AWS's "Amazon Connect
  contact events" page: INITIATED, CONNECTED_TO_SYSTEM, QUEUED, CONNECTED_TO_AGENT,
  DISCONNECTED, COMPLETED), only when the relay has a profile for them (`connect=True`);
- CXone events from the project's simulator (its duplicates off: this mix adds its own).

Interactions run a few at a time, and one that is picked emits a burst of 1-4 events in a row
(a transcription stream's utterances come in runs). Then, as delivery really goes: some
events are swapped with a later event of their interaction (reordering), 5 % of the items are
EventBridge re-deliveries (an exact copy, same envelope id) and 2 % provider re-sends (a new
envelope id around the same payload: a Genesys `eventBody` repeated, a CXone `eventId`
repeated; Amazon Connect has no provider id, so its copies are re-deliveries).
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scripts.traffic.simulate import TrafficGenerator, TrafficProfile

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "genesys"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
GENESYS_SOURCE = "aws.partner/genesys.com/cloud/11111111-2222-4333-8444-555555555555/relay"
CONNECT_SOURCE = "aws.connect"
CONNECT_DETAIL_TYPE = "Amazon Connect Contact Event"
# Genesys conversation topics of one voice conversation, in the order they happen; the
# transcription stream runs between user.start and user.end.
GENESYS_TOPICS = ("flow.outcome", "acd.start", "acd.end", "user.start")
GENESYS_CLOSING_TOPICS = ("user.end", "acw", "customer.end")
CONNECT_EVENT_TYPES = (
    "INITIATED",
    "CONNECTED_TO_SYSTEM",
    "QUEUED",
    "CONNECTED_TO_AGENT",
    "DISCONNECTED",
    "COMPLETED",
)
TRANSCRIPT_BODY_BYTES = (1_500, 10_000)  # eventBody size range of a transcription event
VOCABULARY_TEXT = (
    "i would like to check the status of my order it was supposed to arrive on monday but "
    "the tracking number still says pending can you tell me when it will ship and whether "
    "i can change the delivery address to my office thank you for waiting let me look that "
    "up for you one moment please i see the payment was declined by the bank so the order "
    "is on hold would you like to try another card or update the billing details now"
)
VOCABULARY = tuple(VOCABULARY_TEXT.split())


@dataclass(frozen=True)
class MixProfile:
    """Proportions of the realistic mix. Provider shares are of interactions."""

    genesys_share: float = 0.45  # voice conversations with a transcription stream
    connect_share: float = 0.2
    # the rest: CXone interactions
    concurrent_interactions: int = 8
    redelivery_ratio: float = 0.05  # EventBridge at-least-once: exact copies
    resend_ratio: float = 0.02  # provider re-sends: a new envelope around the same payload
    reorder_ratio: float = 0.1  # events swapped with a later one of their interaction
    reorder_window: int = 12
    transcripts_per_conversation: tuple[int, int] = (3, 14)
    max_burst: int = 4
    mean_gap_ms: float = 120.0


@dataclass
class MixSummary:
    """What a generated mix holds (written into the results beside its figures)."""

    items: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    bytes_by_kind: Counter[str] = field(default_factory=Counter)
    redeliveries: int = 0
    resends: int = 0
    reordered: int = 0
    connect_included: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "events_by_kind": dict(sorted(self.by_kind.items())),
            "mean_body_bytes_by_kind": {
                kind: round(self.bytes_by_kind[kind] / count)
                for kind, count in sorted(self.by_kind.items())
            },
            "mean_body_bytes": round(sum(self.bytes_by_kind.values()) / max(1, self.items)),
            "redeliveries": self.redeliveries,
            "provider_resends": self.resends,
            "reordered": self.reordered,
            "amazon_connect_included": self.connect_included,
        }


def _load_fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


class _Clock:
    def __init__(self, rng: random.Random, mean_gap_ms: float) -> None:
        self._rng = rng
        self._mean_gap_ms = mean_gap_ms
        self.now = START

    def tick(self) -> datetime:
        gap = max(1, round(self._rng.expovariate(1.0 / self._mean_gap_ms)))
        self.now += timedelta(milliseconds=gap)
        return self.now


def _uuid(rng: random.Random) -> str:
    value = f"{rng.getrandbits(128):032x}"
    return f"{value[:8]}-{value[8:12]}-4{value[13:16]}-8{value[17:20]}-{value[20:]}"


def _rfc3339_ms(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _envelope(
    rng: random.Random, source: str, detail_type: str, detail: dict[str, Any], moment: datetime
) -> dict[str, Any]:
    return {
        "version": "0",
        "id": _uuid(rng),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT_ID,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [],
        "detail": detail,
    }


# ---- one interaction's events, produced lazily (each at the moment it is emitted) --------------

EventMaker = Callable[[datetime], tuple[str, dict[str, Any]]]  # moment -> (kind, envelope)


class _GenesysConversation:
    """One voice conversation: its conversation events and its transcription stream."""

    def __init__(self, rng: random.Random, profile: MixProfile) -> None:
        self.rng = rng
        self.conversation_id = _uuid(rng)
        self.participant_id = _uuid(rng)
        low, high = profile.transcripts_per_conversation
        transcripts = rng.randint(low, high)
        self.steps: deque[EventMaker] = deque(
            [self._conversation_event(topic) for topic in GENESYS_TOPICS]
            + [self._transcription_event for _ in range(transcripts)]
            + [self._conversation_event(topic) for topic in GENESYS_CLOSING_TOPICS]
        )
        self._offset_ms = 1_000

    def _rekeyed(self, template: dict[str, Any]) -> dict[str, Any]:
        old = template["detail"]["eventBody"].get("conversationId")
        text = json.dumps(template)
        if old:
            text = text.replace(old, self.conversation_id)
        return json.loads(text)

    def _conversation_event(self, topic: str) -> EventMaker:
        def make(moment: datetime) -> tuple[str, dict[str, Any]]:
            event = self._rekeyed(_load_fixture(f"conversation.{topic}"))
            body = event["detail"]["eventBody"]
            if "participantId" in body:
                body["participantId"] = self.participant_id
            template_time = body.get("eventTime")
            stamp = _rfc3339_ms(moment)
            body["eventTime"] = (
                int(moment.timestamp() * 1000) if isinstance(template_time, int) else stamp
            )
            event["detail"]["timestamp"] = stamp
            envelope = _envelope(
                self.rng, GENESYS_SOURCE, event["detail-type"], event["detail"], moment
            )
            return "genesys_conversation", envelope

        return make

    def _utterance(self, words: int) -> dict[str, Any]:
        rng = self.rng
        chosen = [rng.choice(VOCABULARY) for _ in range(words)]
        offsets, offset = [], self._offset_ms
        for _ in chosen:
            offsets.append(offset)
            offset += rng.randint(80, 600)
        self._offset_ms = offset
        word_objects = [
            {
                "confidence": round(rng.uniform(0.55, 0.99), 3),
                "offsetMs": at,
                "durationMs": rng.randint(60, 700),
                "word": word,
            }
            for word, at in zip(chosen, offsets, strict=True)
        ]
        text = " ".join(chosen)
        return {
            "utteranceId": _uuid(rng),
            "isFinal": True,
            "channel": rng.choice(("EXTERNAL", "INTERNAL")),
            "alternatives": [
                {
                    "confidence": round(rng.uniform(0.6, 0.95), 16),
                    "offsetMs": offsets[0],
                    "durationMs": offset - offsets[0],
                    "transcript": text,
                    "words": word_objects,
                    "decoratedTranscript": text,
                    "decoratedWords": copy.deepcopy(word_objects),
                }
            ],
            "engineProvider": "GENESYS",
            "engineId": "r2d2",
            "dialect": "en-US",
            "agentAssistEnabled": False,
            "voiceTranscriptionEnabled": True,
        }

    def _transcription_event(self, moment: datetime) -> tuple[str, dict[str, Any]]:
        event = self._rekeyed(_load_fixture("conversations.transcription"))
        body = event["detail"]["eventBody"]
        low, high = TRANSCRIPT_BODY_BYTES
        target = math.exp(self.rng.uniform(math.log(low), math.log(high)))
        body["transcripts"] = []
        body["eventTime"] = _rfc3339_ms(moment)
        body["communicationId"] = self.participant_id
        # Grow the utterance until the body reaches its drawn size (each word adds ~150 bytes
        # over its two copies).
        words = 3
        while True:
            body["transcripts"] = [self._utterance(words)]
            if len(json.dumps(body, separators=(",", ":"))) >= target:
                break
            words += max(1, int((target - len(json.dumps(body))) / 160))
        body["status"] = {"offsetMs": self._offset_ms, "status": "SESSION_ONGOING"}
        event["detail"]["timestamp"] = body["eventTime"]
        envelope = _envelope(
            self.rng, GENESYS_SOURCE, event["detail-type"], event["detail"], moment
        )
        return "genesys_transcription", envelope


class _ConnectContact:
    """One Amazon Connect voice contact's lifecycle."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.contact_id = _uuid(rng)
        self.instance_arn = f"arn:aws:connect:{REGION}:{ACCOUNT_ID}:instance/{_uuid(rng)}"
        self.queue_arn = f"{self.instance_arn}/queue/{_uuid(rng)}"
        self.agent_arn = f"{self.instance_arn}/agent/{_uuid(rng)}"
        self.times: dict[str, str] = {}
        self.steps: deque[EventMaker] = deque(
            self._event(event_type) for event_type in CONNECT_EVENT_TYPES
        )

    def _event(self, event_type: str) -> EventMaker:
        def make(moment: datetime) -> tuple[str, dict[str, Any]]:
            stamp = _rfc3339_ms(moment)
            self.times.setdefault(event_type, stamp)
            times = self.times
            detail: dict[str, Any] = {
                "eventType": event_type,
                "contactId": self.contact_id,
                "initialContactId": self.contact_id,
                "channel": "VOICE",
                "instanceArn": self.instance_arn,
                "initiationMethod": "INBOUND",
                "initiationTimestamp": times["INITIATED"],
                "tags": {
                    "aws:connect:instanceId": self.instance_arn.rsplit("/", 1)[1],
                    "aws:connect:systemEndpoint": "+15555550100",
                },
            }
            if "CONNECTED_TO_SYSTEM" in times:
                detail["connectedToSystemTimestamp"] = times["CONNECTED_TO_SYSTEM"]
            if "QUEUED" in times:
                detail["queueInfo"] = {
                    "queueArn": self.queue_arn,
                    "queueType": "STANDARD",
                    "enqueueTimestamp": times["QUEUED"],
                }
            if "CONNECTED_TO_AGENT" in times:
                agent: dict[str, Any] = {
                    "agentArn": self.agent_arn,
                    "connectedToAgentTimestamp": times["CONNECTED_TO_AGENT"],
                }
                if "DISCONNECTED" in times:
                    agent["afterContactWorkStartTimestamp"] = times["DISCONNECTED"]
                if event_type == "COMPLETED":
                    agent["afterContactWorkEndTimestamp"] = stamp
                detail["agentInfo"] = agent
            if "DISCONNECTED" in times:
                detail["disconnectTimestamp"] = times["DISCONNECTED"]
            envelope = _envelope(self.rng, CONNECT_SOURCE, CONNECT_DETAIL_TYPE, detail, moment)
            envelope["resources"] = [
                self.instance_arn,
                f"{self.instance_arn}/contact/{self.contact_id}",
            ]
            return "connect", envelope

        return make


class _CXoneInteraction:
    """CXone events from the project's simulator, one interaction's worth at a time."""

    def __init__(self, events: deque[dict[str, Any]]) -> None:
        interaction = events[0]["detail"].get("interaction.id")
        mine: list[dict[str, Any]] = []
        while events and events[0]["detail"].get("interaction.id") == interaction:
            mine.append(events.popleft())
        self.steps: deque[EventMaker] = deque(self._event(e) for e in mine)

    @staticmethod
    def _event(event: dict[str, Any]) -> EventMaker:
        def make(moment: datetime) -> tuple[str, dict[str, Any]]:
            stamped = copy.deepcopy(event)
            stamped["time"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
            if "timestamp" in stamped["detail"]:
                stamped["detail"]["timestamp"] = _rfc3339_ms(moment)
            return "cxone", stamped

        return make


def _cxone_events(count: int, seed: int) -> deque[dict[str, Any]]:
    """CXone events grouped by interaction (one interaction in flight at a time)."""
    profile = TrafficProfile(duplicate_ratio=0.0, reorder_ratio=0.0, concurrent_interactions=1)
    generator = TrafficGenerator(profile=profile, seed=seed, start=START)
    return deque(item.event for item in generator.take(count))


# ---- the mix ----------------------------------------------------------------------------------


def realistic_events(
    count: int, seed: int, *, connect: bool, profile: MixProfile | None = None
) -> tuple[list[dict[str, Any]], MixSummary]:
    """`count` EventBridge-shaped events of the realistic mix (copies included)."""
    profile = profile or MixProfile()
    rng = random.Random(seed)
    clock = _Clock(rng, profile.mean_gap_ms)
    cxone = _cxone_events(count, seed)
    copies = profile.redelivery_ratio + profile.resend_ratio
    originals = max(1, round(count * (1 - copies)))

    def new_interaction() -> Any:
        draw = rng.random()
        if draw < profile.genesys_share:
            return _GenesysConversation(rng, profile)
        if connect and draw < profile.genesys_share + profile.connect_share:
            return _ConnectContact(rng)
        return _CXoneInteraction(cxone)

    active: list[Any] = []
    emitted: list[tuple[str, dict[str, Any], str]] = []  # kind, event, interaction key
    while len(emitted) < originals:
        while len(active) < profile.concurrent_interactions:
            active.append(new_interaction())
        interaction = rng.choice(active)
        for _ in range(rng.randint(1, profile.max_burst)):
            if not interaction.steps or len(emitted) == originals:
                break
            kind, event = interaction.steps.popleft()(clock.tick())
            emitted.append((kind, event, str(id(interaction))))
        if not interaction.steps:
            active.remove(interaction)

    summary = MixSummary(connect_included=connect)
    summary.reordered = _reorder(rng, emitted, profile)
    items = _with_copies(rng, emitted, count, profile, summary)
    for kind, event in items:
        summary.items += 1
        summary.by_kind[kind] += 1
        summary.bytes_by_kind[kind] += len(json.dumps(event).encode("utf-8"))
    return [event for _, event in items], summary


def _reorder(
    rng: random.Random, emitted: list[tuple[str, dict[str, Any], str]], profile: MixProfile
) -> int:
    """Swap some events with a later event of their interaction (within the window)."""
    swapped = 0
    touched: set[int] = set()
    for position in range(len(emitted)):
        if position in touched or rng.random() >= profile.reorder_ratio:
            continue
        key = emitted[position][2]
        for later in range(position + 1, min(len(emitted), position + profile.reorder_window)):
            if later not in touched and emitted[later][2] == key:
                emitted[position], emitted[later] = emitted[later], emitted[position]
                touched |= {position, later}
                swapped += 1
                break
    return swapped


def _resent(rng: random.Random, kind: str, event: dict[str, Any]) -> dict[str, Any] | None:
    """A provider re-send of `event`: a new envelope id around the same payload, or None when
    the provider has no id a re-send would repeat."""
    if kind == "connect" or (kind == "cxone" and "eventId" not in event["detail"]):
        return None
    copied = copy.deepcopy(event)
    copied["id"] = _uuid(rng)
    return copied


def _with_copies(
    rng: random.Random,
    emitted: list[tuple[str, dict[str, Any], str]],
    count: int,
    profile: MixProfile,
    summary: MixSummary,
) -> list[tuple[str, dict[str, Any]]]:
    """The events with re-deliveries and re-sends of recent ones mixed in, `count` in all."""
    items: list[tuple[str, dict[str, Any]]] = []
    recent: deque[tuple[str, dict[str, Any]]] = deque(maxlen=100)
    copies = profile.redelivery_ratio + profile.resend_ratio
    for kind, event, _ in emitted:
        items.append((kind, event))
        recent.append((kind, event))
        while len(items) < count and rng.random() < copies:
            original_kind, original = rng.choice(recent)
            copied = None
            if rng.random() < profile.resend_ratio / copies:
                copied = _resent(rng, original_kind, original)
                summary.resends += copied is not None
            if copied is None:
                copied = copy.deepcopy(original)
                summary.redeliveries += 1
            items.append((original_kind, copied))
    return items[:count]

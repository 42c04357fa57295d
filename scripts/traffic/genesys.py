"""Simulated Genesys Cloud notifications, as its EventBridge integration delivers them.

Shapes follow the real samples (tests/fixtures/genesys): source
`aws.partner/genesys.com/cloud/{orgId}/{suffix}`, `detail-type` the topic pattern, `detail`
holding `topicName`, `version` "2", `eventBody`, `metadata.CorrelationId` and `timestamp`. A
voice conversation goes customer.start → acd.start → acd.end → user.start → (dozens of
transcription notifications) → user.end → acw → customer.end; conversation detail events
carry `eventTime` as epoch milliseconds, transcription notifications as RFC 3339. Every
notification of a conversation's transcription session shares one CorrelationId, as in the
live capture that showed it (145 notifications, 6 CorrelationIds): the relay must not
deduplicate on it.

A duplicate is a re-sent notification: the same `detail` under a new EventBridge id (a
provider re-send, recognised by the content key through any path) or, with
`same_id_redeliveries`, sometimes the same envelope again (EventBridge's own re-delivery, which
only a send to the queue can reproduce).
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from random import Random
from typing import Any

from chalicelib.config import GENESYS_SOURCE_PREFIX
from chalicelib.formats import rfc3339
from scripts.traffic.chains import ChainClock
from scripts.traffic.simulate import ProviderTraffic, TrafficProfile, random_uuid

INVALID_KINDS = ("event_body_not_object", "no_interaction_id", "bad_event_time")
DETAIL_EVENTS = "v2.detail.events.conversation.{id}."
TRANSCRIPTION = "v2.conversations.{id}.transcription"
TRANSCRIPTION_RATIO = 0.6  # of voice conversations
TRANSCRIPTS_PER_CONVERSATION = (20, 60)
# Genesys stamps `detail.timestamp` a little after the event's own time.
PUBLISH_DELAY_MS = (50, 400)
WORDS = (
    *("thanks", "for", "calling", "how", "can", "I", "help", "you", "today", "my", "invoice"),
    *("shows", "a", "charge", "I", "do", "not", "recognise", "let", "me", "check", "that"),
    *("one", "moment", "please", "the", "account", "number", "is", "on", "the", "letter", "yes"),
)
SAME_ID_SHARE = 0.5  # of duplicates, when same-id re-deliveries are possible


def genesys_source(organization_id: str, suffix: str = "relay-simulator") -> str:
    return f"{GENESYS_SOURCE_PREFIX}{organization_id}/{suffix}"


def epoch_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def transcription_detail(
    rng: Random,
    *,
    organization_id: str,
    conversation_id: str,
    communication_id: str,
    correlation_id: str,
    session_start: datetime,
    moment: datetime,
) -> dict[str, Any]:
    """One transcription notification's `detail`: an utterance at `moment` of the session."""
    offset_ms = max(0, epoch_millis(moment) - epoch_millis(session_start))
    words = [rng.choice(WORDS) for _ in range(rng.randrange(3, 14))]
    duration_ms = 300 * len(words)
    return {
        "topicName": TRANSCRIPTION.replace("{id}", conversation_id),
        "version": "2",
        "eventBody": {
            "eventTime": rfc3339(moment),
            "organizationId": organization_id,
            "conversationId": conversation_id,
            "communicationId": communication_id,
            "sessionStartTimeMs": epoch_millis(session_start),
            "transcriptionStartTimeMs": epoch_millis(session_start),
            "transcripts": [
                {
                    "utteranceId": random_uuid(rng),
                    "isFinal": True,
                    "channel": rng.choice(("EXTERNAL", "INTERNAL")),
                    "alternatives": [
                        {
                            "confidence": round(rng.uniform(0.6, 0.99), 3),
                            "offsetMs": offset_ms,
                            "durationMs": duration_ms,
                            "transcript": " ".join(words),
                        }
                    ],
                    "engineProvider": "GENESYS",
                    "engineId": "r2d2",
                    "dialect": "en-US",
                    "agentAssistEnabled": False,
                    "voiceTranscriptionEnabled": True,
                }
            ],
            "status": {"offsetMs": offset_ms, "status": "SESSION_ONGOING"},
        },
        "metadata": {"CorrelationId": correlation_id},
        "timestamp": rfc3339(moment + timedelta(milliseconds=rng.randrange(*PUBLISH_DELAY_MS))),
    }


@dataclass
class _Conversation:
    conversation_id: str
    media_type: str
    customer_participant: str
    agent_participant: str
    agent_user: str
    communication_id: str
    transcription_correlation_id: str
    ani: str
    plan: deque[str]  # topic suffixes still to come ("transcription" for an utterance)
    session_start: datetime | None = None


class GenesysTrafficGenerator(ProviderTraffic):
    """Endless, seeded Genesys Cloud conversations, interleaved by time."""

    invalid_kinds = INVALID_KINDS

    def __init__(
        self,
        profile: TrafficProfile | None = None,
        seed: int | None = None,
        start: datetime | None = None,
        *,
        same_id_redeliveries: bool = False,
        organization_id: str = "11111111-2222-4333-8444-555555555555",
    ) -> None:
        super().__init__(profile, seed, start)
        self.same_id_redeliveries = same_id_redeliveries
        self.organization_id = organization_id
        self.source = genesys_source(organization_id)
        self._mean_gap_ms = self.profile.concurrent_interactions * self.profile.mean_gap_ms
        self._chains: ChainClock[_Conversation] = ChainClock(
            self.profile.concurrent_interactions, self._clock, lambda _: self._new_conversation()
        )

    def _new_conversation(self) -> _Conversation:
        rng = self._rng
        media_type = rng.choice(("VOICE", "VOICE", "VOICE", "CHAT"))
        plan = ["customer.start", "acd.start", "acd.end", "user.start"]
        if media_type == "VOICE" and rng.random() < TRANSCRIPTION_RATIO:
            plan += ["transcription"] * rng.randrange(*TRANSCRIPTS_PER_CONVERSATION)
        plan += ["user.end", "acw", "customer.end"]
        agent = rng.randrange(1, self.profile.agents + 1)
        return _Conversation(
            conversation_id=random_uuid(rng),
            media_type=media_type,
            customer_participant=random_uuid(rng),
            agent_participant=random_uuid(rng),
            agent_user=f"a5a5a5a5-0000-4000-8000-{agent:012x}",
            communication_id=random_uuid(rng),
            transcription_correlation_id=random_uuid(rng),
            ani=f"tel:+1555555{rng.randrange(10**4):04d}",
            plan=deque(plan),
        )

    def _gap(self) -> timedelta:
        millis = round(self._rng.expovariate(1.0 / self._mean_gap_ms))
        return timedelta(milliseconds=max(1, millis))  # eventTime has millisecond resolution

    def _detail_event_body(
        self, conversation: _Conversation, suffix: str, moment: datetime
    ) -> dict[str, Any]:
        agent_side = suffix in ("user.start", "user.end", "acw")
        body: dict[str, Any] = {
            "eventTime": epoch_millis(moment),
            "conversationId": conversation.conversation_id,
            "participantId": (
                conversation.agent_participant if agent_side else conversation.customer_participant
            ),
            "sessionId": conversation.communication_id,
            "mediaType": conversation.media_type,
            "provider": "Edge" if conversation.media_type == "VOICE" else "PureCloud Webchat v2",
            "direction": "INBOUND",
            "ani": conversation.ani,
            "dnis": "tel:+15555550000",
            "queueId": "9e9e9e9e-0000-4000-8000-000000000001",
        }
        if agent_side:
            body["userId"] = conversation.agent_user
        if suffix.endswith(".end"):
            body["disconnectType"] = "PEER" if suffix == "user.end" else "ENDPOINT"
        if suffix == "acd.end":
            body |= {"acdOutcome": "ANSWERED", "answeredUserId": conversation.agent_user}
        if suffix == "acw":
            wrapup_code = "3a3a3a3a-0000-4000-8000-000000000001"
            body |= {"wrapupCode": wrapup_code, "wrapupDurationMs": 14000}
        return body

    def _next_valid_event(self) -> dict[str, Any]:
        moment, conversation = self._chains.next_due()
        suffix = conversation.plan.popleft()
        if conversation.plan:
            self._chains.reschedule(conversation, moment, self._gap())
        self._clock = moment
        if suffix == "transcription":
            if conversation.session_start is None:
                conversation.session_start = moment
            detail = transcription_detail(
                self._rng,
                organization_id=self.organization_id,
                conversation_id=conversation.conversation_id,
                communication_id=conversation.communication_id,
                correlation_id=conversation.transcription_correlation_id,
                session_start=conversation.session_start,
                moment=moment,
            )
            return self._envelope(self.source, TRANSCRIPTION, detail, moment)
        pattern = DETAIL_EVENTS + suffix
        detail = {
            "topicName": pattern.replace("{id}", conversation.conversation_id),
            "version": "2",
            "eventBody": self._detail_event_body(conversation, suffix, moment),
            "metadata": {"CorrelationId": random_uuid(self._rng)},
            "timestamp": rfc3339(
                moment + timedelta(milliseconds=self._rng.randrange(*PUBLISH_DELAY_MS))
            ),
        }
        return self._envelope(self.source, pattern, detail, moment)

    def _redeliverable(self, event: dict[str, Any]) -> bool:
        return True  # the content key recognises a re-send under any envelope id

    def _redelivery(self, original: dict[str, Any]) -> dict[str, Any]:
        copied = copy.deepcopy(original)
        if not (self.same_id_redeliveries and self._rng.random() < SAME_ID_SHARE):
            copied["id"] = random_uuid(self._rng)  # Genesys re-sends: a new EventBridge id
        return copied

    def _invalid_event(self, reason: str) -> dict[str, Any]:
        """A notification the Genesys profile refuses: schema drift or a broken integration."""
        moment = self._clock
        conversation_id = random_uuid(self._rng)
        pattern = DETAIL_EVENTS + "acd.start"
        detail: dict[str, Any] = {
            "topicName": pattern.replace("{id}", conversation_id),
            "version": "2",
            "eventBody": {"eventTime": epoch_millis(moment), "conversationId": conversation_id},
            "metadata": {"CorrelationId": random_uuid(self._rng)},
        }
        if reason == "event_body_not_object":
            detail["eventBody"] = "acd.start"
        elif reason == "no_interaction_id":
            # A topic without the id its pattern promises, and no conversationId to fall back on.
            detail["topicName"] = "v2.detail.events.conversation.acd.start"
            del detail["eventBody"]["conversationId"]
        elif reason == "bad_event_time":
            detail["eventBody"]["eventTime"] = moment.strftime("%d/%m/%Y %H:%M")
        else:
            raise ValueError(f"unknown invalid kind {reason!r}")
        return self._envelope(self.source, pattern, detail, moment)

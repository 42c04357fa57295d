"""Genesys Cloud transcription streams as Genesys sends them through EventBridge, and the
Genesys profile's dedup key: shared by the reliability and end-to-end stream tests."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

from scripts.traffic.genesys import TRANSCRIPTION, genesys_source, transcription_detail
from scripts.traffic.simulate import envelope_time, random_uuid

ORGANIZATION = "11111111-2222-4333-8444-555555555555"


def content_key(event: dict[str, Any]) -> str:
    """The Genesys profile's dedup key, by its contract: topicName | SHA-256(canonical body)."""
    body = json.dumps(event["detail"]["eventBody"], sort_keys=True, separators=(",", ":"))
    return f"{event['detail']['topicName']}|{hashlib.sha256(body.encode()).hexdigest()}"


def transcription_streams(
    rng: Random, conversations: int, per_conversation: int
) -> list[dict[str, Any]]:
    """Transcription notifications, each conversation's sharing one CorrelationId."""
    start = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
    events = []
    for _ in range(conversations):
        conversation, communication = random_uuid(rng), random_uuid(rng)
        correlation = random_uuid(rng)
        moment = start + timedelta(milliseconds=rng.randrange(5000))
        for _ in range(per_conversation):
            moment += timedelta(milliseconds=rng.randrange(150, 2500))
            detail = transcription_detail(
                rng,
                organization_id=ORGANIZATION,
                conversation_id=conversation,
                communication_id=communication,
                correlation_id=correlation,
                session_start=start,
                moment=moment,
            )
            events.append(
                {
                    "version": "0",
                    "id": random_uuid(rng),
                    "detail-type": TRANSCRIPTION,
                    "source": genesys_source(ORGANIZATION),
                    "account": "123456789012",
                    "time": envelope_time(moment),
                    "region": "us-east-1",
                    "resources": [],
                    "detail": detail,
                }
            )
    return events

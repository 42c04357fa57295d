"""Shared by the replay API and replay job tests: delivered-message builders, a seeded store,
a module-wide provisioned stage, and a chalice.test.Client over the API blueprint alone."""

from __future__ import annotations

import contextlib
import json
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from chalice import Chalice
from chalice.test import Client

from chalicelib.api.blueprint import api
from chalicelib.config import load_settings
from chalicelib.formats import rfc3339
from chalicelib.runtime import Runtime, get_runtime, reset_runtime
from chalicelib.stack import stack_spec
from chalicelib.store import layout as store
from scripts.provisioning.infra import Clients, provision_infrastructure
from tests.support.environment import REGION
from tests.support.helpers import seed_store

STAGE_CHANGED = "Interaction.Lifecycle.StageChanged"
ROUTING = "Routing.StateChanged"


def delivered(
    interaction_id: str,
    event_id: str,
    occurred_at: str,
    *,
    sequence: int | None = None,
    detail_type: str = STAGE_CHANGED,
    late: bool = False,
) -> dict[str, Any]:
    """A delivered message as the pipeline stores it (the delivered-message contract)."""
    stage = "Connected" if detail_type == STAGE_CHANGED else None
    state = None if detail_type == STAGE_CHANGED else "Available"
    detail: dict[str, Any] = {"interaction.id": interaction_id}
    if sequence is not None:
        detail["sequence"] = sequence
    return {
        "event_id": event_id,
        "interaction_id": interaction_id,
        "participant_id": "agent-17",
        "detail_type": detail_type,
        "stage": stage,
        "state": state,
        "sequence": sequence,
        "occurred_at": occurred_at,
        "received_at": occurred_at,
        "late": late,
        "replay": False,
        "replay_job_id": None,
        "source": "com.nice.cxone.interactions",
        "event": {"id": event_id, "detail-type": detail_type, "detail": detail},
    }


def seed(runtime: Runtime, messages: list[dict[str, Any]]) -> None:
    """Store the messages as the pipeline does: events items and, per batch of 10, the
    batch's time-index items."""
    seed_store(runtime.dynamodb, runtime.settings, messages, executor=runtime.executor)


def at(base: datetime, seconds: float) -> str:
    return rfc3339(base + timedelta(seconds=seconds))


def make_client() -> Iterator[Client]:
    """A chalice.test.Client over a small app holding just the blueprint."""
    app = Chalice("test")
    app.register_blueprint(api)
    with Client(app, stage_name="test") as chalice_client:
        yield chalice_client


@contextlib.contextmanager
def shared_stage_environment() -> Iterator[dict[str, str]]:
    """A provisioned stage for a whole module (provisioning takes about a second per stage);
    its tests keep apart by seeding their own interactions on their own days."""
    env = {
        "RELAY_APP": "relay",
        "RELAY_STAGE": "s" + uuid.uuid4().hex[:10],
        "RELAY_ACCOUNT_ID": "123456789012",
        "AWS_REGION": REGION,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        provision_infrastructure(
            Clients.from_session(boto3.Session(region_name=REGION)),
            stack_spec(load_settings()),
            False,
        )
        yield env


def runtime_of(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A fresh Runtime of a shared stage, for one test."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_runtime()
    try:
        yield get_runtime()
    finally:
        reset_runtime()


def legacy_event_item(
    message: dict[str, Any], *, compressed: bool = True, now: datetime | None = None
) -> dict[str, Any]:
    """An events item as the store wrote it before the compact layout: `time_sort`, the
    order fields beside it, and the whole message in `msg` (zlib-compressed JSON, or plain
    JSON). A fixed copy of that old writer, so the readers are held to it."""
    raw = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    moment = now or datetime.now(UTC)
    item: dict[str, Any] = {
        **store.event_key(message["interaction_id"], message["event_id"]),
        "time_sort": {"S": store.time_sort(message)},
        "occurred_at": {"S": message["occurred_at"]},
        "event_id": {"S": message["event_id"]},
        "msg": {"B": zlib.compress(raw, 6) if compressed else raw},
        "sha": {"S": "0" * 64},
        "expires_at": {"N": str(int((moment + timedelta(days=30)).timestamp()))},
    }
    if isinstance(message.get("sequence"), int):
        item["seq"] = {"N": str(message["sequence"])}
    return item


def seed_legacy(runtime: Runtime, messages: list[dict[str, Any]]) -> None:
    """Store messages in the earlier events layout (alternately compressed and plain), with
    their time-index items (whose layout did not change)."""
    names = runtime.settings.names
    requests = [
        (names.events_table, legacy_event_item(message, compressed=n % 2 == 0))
        for n, message in enumerate(messages)
    ]
    requests += [
        (names.time_index_table, item)
        for item in store.time_index_items(
            [(message, message["event_id"]) for message in messages],
            shards=runtime.settings.time_index_shards,
            retention_days=runtime.settings.store_retention_days,
            now=datetime.now(UTC),
        )
    ]
    for table, item in requests:
        runtime.dynamodb.put_item(TableName=table, Item=item)

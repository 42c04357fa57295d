"""Settings: one frozen object built from environment variables at cold start.

Every resource name can be set explicitly (the deployed stage's config.json does), and
otherwise derives from the app name and stage the same way `scripts.provision` names them.
A missing or malformed variable raises `ConfigError` naming it, so a bad deployment fails at
cold start instead of on the first event.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from chalicelib.errors import ConfigurationError
from chalicelib.formats import one_of

DEFAULT_APP_NAME = "cxone-relay"
DEFAULT_CONSUMERS = ("analytics-sink", "crm-updater", "agent-dashboard")
DEFAULT_EVENT_SOURCE = "com.nice.cxone.interactions"
DEFAULT_STAGES = (
    "Queued",
    "Offered",
    "Connected",
    "Transfer",
    "Monitor",
    "Recorded",
    "WrapUp",
    "Closed",
)
GENESYS_SOURCE_PREFIX = "aws.partner/genesys.com/cloud/"
CONNECT_SOURCE = "aws.connect"
CONNECT_DETAIL_TYPE = "Amazon Connect Contact Event"
# AWS service events are published on the account's default bus only.
DEFAULT_EVENT_BUS = "default"
DETAIL_TYPE_STAGE = "Interaction.Lifecycle.StageChanged"
DETAIL_TYPE_ROUTING = "Routing.StateChanged"
CXONE_DETAIL_TYPES = (DETAIL_TYPE_STAGE, DETAIL_TYPE_ROUTING)

# SNS topic names: letters, digits, hyphens, underscores; FIFO topics end in ".fifo".
_CONSUMER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,200}(\.fifo)?$")
_NAME_PART = re.compile(r"^[A-Za-z0-9-]{1,40}$")
# A custom bus the user names for Amazon Connect (an ARN is not accepted: rules need a name).
_EVENT_BUS_NAME = re.compile(r"^[A-Za-z0-9._-]{1,256}$")


# "report": the ingest function returns batchItemFailures; "raise": it deletes what it
# settled and raises, for a mapping without ReportBatchItemFailures.
BatchFailureMode = Literal["report", "raise"]
BATCH_FAILURE_MODES: tuple[BatchFailureMode, ...] = ("report", "raise")


class ConfigError(ConfigurationError):
    """A relay setting (an environment variable) is missing or malformed; the message names
    the variable."""


@dataclass(frozen=True)
class ResourceNames:
    """Physical names of every resource of one stage."""

    ingest_queue: str
    ingest_dlq: str
    replay_queue: str
    replay_dlq: str
    quarantine_topic: str
    ledger_table: str
    events_table: str
    time_index_table: str
    jobs_table: str
    event_bus: str
    ingest_rule: str
    token_secret: str
    credentials_secret: str
    push_secret: str
    cursor_key_secret: str


@dataclass(frozen=True)
class Settings:
    app_name: str
    stage: str
    region: str
    account_id: str | None
    event_source: str
    consumers: tuple[str, ...]
    names: ResourceNames
    # "raise": delete successes, raise when any failed (safe on any mapping, see
    # chalicelib/ingest/handler.py); "report": batchItemFailures, only where RBIF is verified.
    batch_failure_mode: BatchFailureMode = "raise"
    dedup_retention_days: int = 7
    store_retention_days: int = 30
    allowed_stages: tuple[str, ...] = DEFAULT_STAGES
    allowed_states: tuple[str, ...] = ()  # empty: any non-empty string
    metadata_max_bytes: int = 16 * 1024
    lease_seconds: int = 60
    deadline_margin_ms: int = 1000
    # How long a batch waits for its turn (events held back by another invocation) before
    # retrying them through the queue (see chalicelib/ingest/batch.py).
    turn_wait_ms: int = 5000
    backoff_base_seconds: int = 2
    backoff_max_seconds: int = 60
    genesys_enabled: bool = True
    time_index_shards: int = 4
    connect_enabled: bool = True
    connect_event_bus: str = DEFAULT_EVENT_BUS
    # After a push-secret rotation the previous secret is still accepted this long, measured
    # from the new version's creation, so senders can switch without downtime.
    push_secret_overlap_seconds: int = 24 * 3600
    # A page cursor is refused this long after it was issued.
    cursor_ttl_seconds: int = 3600

    @property
    def prefix(self) -> str:
        return f"{self.app_name}-{self.stage}"

    def consumer_topic_name(self, consumer: str) -> str:
        return f"{self.prefix}-{consumer}"


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    """A whole-number variable, or `default` when unset; malformed values name the variable."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _csv(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _batch_failure_mode(value: str) -> BatchFailureMode:
    mode = one_of(value, BATCH_FAILURE_MODES)
    if mode is None:
        raise ConfigError(f"RELAY_BATCH_FAILURE_MODE must be 'report' or 'raise', got {value!r}")
    return mode


def _flag(env: Mapping[str, str], name: str) -> bool:
    """A 'true'/'false' variable, default true."""
    value = env.get(name, "true").lower()
    if value not in ("true", "false"):
        raise ConfigError(f"{name} must be 'true' or 'false', got {value!r}")
    return value == "true"


def _name_part(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name) or default
    if not _NAME_PART.match(value):
        raise ConfigError(f"{name} must be 1-40 letters, digits or hyphens, got {value!r}")
    return value


def resource_names(
    app_name: str, stage: str, env: Mapping[str, str] | None = None
) -> ResourceNames:
    """Names of a stage's resources; each may be overridden by its own variable."""
    env = env or {}
    prefix = f"{app_name}-{stage}"

    def pick(variable: str, suffix: str) -> str:
        return env.get(variable) or f"{prefix}-{suffix}"

    return ResourceNames(
        ingest_queue=pick("RELAY_INGEST_QUEUE", "ingest"),
        ingest_dlq=pick("RELAY_INGEST_DLQ", "ingest-dlq"),
        replay_queue=pick("RELAY_REPLAY_QUEUE", "replay-jobs"),
        replay_dlq=pick("RELAY_REPLAY_DLQ", "replay-jobs-dlq"),
        quarantine_topic=pick("RELAY_QUARANTINE_TOPIC", "quarantine"),
        ledger_table=pick("RELAY_LEDGER_TABLE", "ledger"),
        events_table=pick("RELAY_EVENTS_TABLE", "events"),
        time_index_table=pick("RELAY_TIME_INDEX_TABLE", "time-index"),
        jobs_table=pick("RELAY_JOBS_TABLE", "replay-jobs"),
        event_bus=pick("RELAY_EVENT_BUS", "bus"),
        ingest_rule=pick("RELAY_INGEST_RULE", "ingest-rule"),
        token_secret=pick("RELAY_TOKEN_SECRET", "cxone-token"),
        credentials_secret=pick("RELAY_CREDENTIALS_SECRET", "cxone-credentials"),
        push_secret=pick("RELAY_PUSH_SECRET", "push-signing-secret"),
        cursor_key_secret=pick("RELAY_CURSOR_KEY_SECRET", "cursor-signing-key"),
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    app_name = _name_part(env, "RELAY_APP", DEFAULT_APP_NAME)
    stage = _name_part(env, "RELAY_STAGE", "dev")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError("AWS_REGION (or AWS_DEFAULT_REGION) must be set")
    account_id = env.get("RELAY_ACCOUNT_ID") or None
    if account_id is not None and not re.fullmatch(r"\d{12}", account_id):
        raise ConfigError(f"RELAY_ACCOUNT_ID must be 12 digits, got {account_id!r}")
    consumers = _csv(env, "CONSUMERS", DEFAULT_CONSUMERS)
    if not consumers:
        raise ConfigError("CONSUMERS must name at least one consumer")
    for consumer in consumers:
        if not _CONSUMER_NAME.match(consumer):
            raise ConfigError(
                f"CONSUMERS: {consumer!r} is not a valid consumer name "
                "(letters, digits, '-', '_', optional '.fifo' suffix)"
            )
    if len(set(consumers)) != len(consumers):
        raise ConfigError(f"CONSUMERS lists a consumer twice: {','.join(consumers)}")
    mode = _batch_failure_mode(env.get("RELAY_BATCH_FAILURE_MODE", "raise"))
    genesys = _flag(env, "RELAY_GENESYS_ENABLED")
    connect = _flag(env, "RELAY_CONNECT_ENABLED")
    connect_bus = env.get("RELAY_CONNECT_EVENT_BUS") or DEFAULT_EVENT_BUS
    if not _EVENT_BUS_NAME.match(connect_bus):
        raise ConfigError(
            "RELAY_CONNECT_EVENT_BUS must be an event bus name (1-256 letters, digits, "
            f"'.', '-', '_'), got {connect_bus!r}"
        )
    return Settings(
        app_name=app_name,
        stage=stage,
        region=region,
        account_id=account_id,
        event_source=env.get("RELAY_EVENT_SOURCE") or DEFAULT_EVENT_SOURCE,
        consumers=consumers,
        names=resource_names(app_name, stage, env),
        batch_failure_mode=mode,
        dedup_retention_days=env_int(env, "RELAY_DEDUP_RETENTION_DAYS", 7, minimum=1),
        store_retention_days=env_int(env, "RELAY_STORE_RETENTION_DAYS", 30, minimum=1),
        allowed_stages=_csv(env, "RELAY_ALLOWED_STAGES", DEFAULT_STAGES),
        allowed_states=_csv(env, "RELAY_ALLOWED_STATES", ()),
        metadata_max_bytes=env_int(env, "RELAY_METADATA_MAX_BYTES", 16 * 1024, minimum=0),
        lease_seconds=env_int(env, "RELAY_LEASE_SECONDS", 60, minimum=1),
        deadline_margin_ms=env_int(env, "RELAY_DEADLINE_MARGIN_MS", 1000, minimum=0),
        turn_wait_ms=env_int(env, "RELAY_TURN_WAIT_MS", 5000, minimum=0),
        backoff_base_seconds=env_int(env, "RELAY_BACKOFF_BASE_SECONDS", 2, minimum=0),
        backoff_max_seconds=env_int(env, "RELAY_BACKOFF_MAX_SECONDS", 60, minimum=0),
        genesys_enabled=genesys,
        time_index_shards=env_int(env, "RELAY_TIME_INDEX_SHARDS", 4, minimum=1),
        connect_enabled=connect,
        connect_event_bus=connect_bus,
        push_secret_overlap_seconds=env_int(
            env, "RELAY_PUSH_SECRET_OVERLAP_SECONDS", 24 * 3600, minimum=0
        ),
        cursor_ttl_seconds=env_int(env, "RELAY_CURSOR_TTL_SECONDS", 3600, minimum=1),
    )


def names_from_environment(env: Mapping[str, str] | None = None) -> ResourceNames:
    """Resource names at import time (decorators need queue names before any handler runs).

    Chalice reads `app.py` at deploy time without the stage's environment variables, so the
    names fall back to the same defaults `load_settings` derives.
    """
    env = os.environ if env is None else env
    app_name = env.get("RELAY_APP") or DEFAULT_APP_NAME
    stage = env.get("RELAY_STAGE") or "dev"
    return resource_names(app_name, stage, env)

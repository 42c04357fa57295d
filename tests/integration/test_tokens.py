"""Token lifecycle: CXone stand-in over HTTP, Secrets Manager on the moto server.

Time is a test clock handed to both the client and `refresh_token`, so "an hour later" costs
nothing; the stand-in checks its own token expiry in real time.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from chalicelib.config import Settings, load_settings
from chalicelib.cxone.client import (
    AccessToken,
    CXoneAuthError,
    CXoneClient,
    CXoneSettings,
    CXoneUnavailableError,
    load_cxone_settings,
)
from chalicelib.cxone.tokens import (
    CredentialsError,
    RefreshOutcome,
    TokenProvider,
    TokenUnavailableError,
    refresh_token,
    store_token,
)
from scripts.local.cxone_standin import TOKEN_PATH, CXoneStandIn

CLIENT_ID = "relay-client"
TTL = 3600


class Clock:
    """A settable UTC clock."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def client_secret() -> str:
    return "secret-" + uuid.uuid4().hex


@pytest.fixture
def stand_in(client_secret: str) -> Iterator[CXoneStandIn]:
    with CXoneStandIn(
        CLIENT_ID,
        client_secret,
        token_ttl_seconds=TTL,
        access_key_id="ak-relay",
        access_key_secret="aks-" + client_secret,
        tenant_id="tenant-42",
    ) as server:
        yield server


@pytest.fixture
def settings(relay_env: dict) -> Settings:
    return load_settings()


@pytest.fixture
def secrets(boto_session: boto3.Session) -> Any:
    return boto_session.client("secretsmanager")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def cxone_settings_for(stand_in: CXoneStandIn, **env: str) -> CXoneSettings:
    return load_cxone_settings(
        {"CXONE_AUTH_BASE_URL": stand_in.base_url, "CXONE_MAX_RETRIES": "2", **env}
    )


@pytest.fixture
def cxone_settings(stand_in: CXoneStandIn) -> CXoneSettings:
    return cxone_settings_for(stand_in)


@pytest.fixture
def client(cxone_settings: CXoneSettings, clock: Clock, sleeps: list[float]) -> CXoneClient:
    return CXoneClient(cxone_settings, sleep=sleeps.append, clock=clock, jitter=lambda: 0.5)


@pytest.fixture
def stored_credentials(secrets: Any, settings: Settings, client_secret: str) -> None:
    secrets.create_secret(
        Name=settings.names.credentials_secret,
        SecretString=json.dumps({"client_id": CLIENT_ID, "client_secret": client_secret}),
    )


def stored_token(secrets: Any, settings: Settings) -> dict[str, str]:
    value = secrets.get_secret_value(SecretId=settings.names.token_secret)["SecretString"]
    return json.loads(value)


def refresh(
    secrets: Any,
    settings: Settings,
    cxone_settings: CXoneSettings,
    client: CXoneClient,
    clock: Clock,
) -> RefreshOutcome:
    return refresh_token(secrets, settings, cxone_settings, client, clock())


# --------------------------------------------------------------------------- refresh_token


@pytest.mark.usefixtures("stored_credentials")
def test_first_run_stores_a_token_with_its_expiry(
    secrets: Any,
    settings: Settings,
    cxone_settings: CXoneSettings,
    client: CXoneClient,
    clock: Clock,
    stand_in: CXoneStandIn,
) -> None:
    outcome = refresh(secrets, settings, cxone_settings, client, clock)

    stored = stored_token(secrets, settings)
    assert outcome.status == "refreshed" and not outcome.failed
    assert outcome.token_expires_at == clock.now + timedelta(seconds=TTL)
    assert stored["access_token"] in stand_in.issued_tokens()
    assert datetime.fromisoformat(stored["expires_at"]) == outcome.token_expires_at
    assert stored["token_type"].lower() == "bearer"
    # The stored token opens the connection API.
    assert client.find_connection(stored["access_token"], "relay") is None


@pytest.mark.usefixtures("stored_credentials")
def test_fresh_token_is_left_alone(
    secrets: Any,
    settings: Settings,
    cxone_settings: CXoneSettings,
    client: CXoneClient,
    clock: Clock,
    stand_in: CXoneStandIn,
) -> None:
    refresh(secrets, settings, cxone_settings, client, clock)
    first = stored_token(secrets, settings)
    clock.advance(TTL - cxone_settings.refresh_margin_seconds - 60)  # 11 minutes left

    outcome = refresh(secrets, settings, cxone_settings, client, clock)

    assert outcome.status == "fresh"
    assert stored_token(secrets, settings) == first
    assert stand_in.count(TOKEN_PATH) == 1


@pytest.mark.usefixtures("stored_credentials")
def test_token_within_the_margin_is_replaced(
    secrets: Any,
    settings: Settings,
    cxone_settings: CXoneSettings,
    client: CXoneClient,
    clock: Clock,
) -> None:
    refresh(secrets, settings, cxone_settings, client, clock)
    first = stored_token(secrets, settings)
    clock.advance(TTL - cxone_settings.refresh_margin_seconds + 1)  # just under 10 minutes left

    outcome = refresh(secrets, settings, cxone_settings, client, clock)

    second = stored_token(secrets, settings)
    assert outcome.status == "refreshed"
    assert second["access_token"] != first["access_token"]
    assert datetime.fromisoformat(second["expires_at"]) == clock.now + timedelta(seconds=TTL)


def test_refresh_margin_comes_from_the_environment(stand_in: CXoneStandIn) -> None:
    settings = cxone_settings_for(stand_in, CXONE_REFRESH_MARGIN_SECONDS="120")

    assert settings.refresh_margin_seconds == 120


@pytest.mark.usefixtures("stored_credentials")
def test_failed_refresh_keeps_the_still_valid_token(
    secrets: Any,
    settings: Settings,
    cxone_settings: CXoneSettings,
    client: CXoneClient,
    clock: Clock,
    stand_in: CXoneStandIn,
) -> None:
    refresh(secrets, settings, cxone_settings, client, clock)
    first = stored_token(secrets, settings)
    clock.advance(TTL - 120)  # two minutes left
    stand_in.fail_next(TOKEN_PATH, 503, times=5)

    outcome = refresh(secrets, settings, cxone_settings, client, clock)

    assert outcome.status == "failed_kept_valid"
    assert outcome.failed and outcome.has_valid_token
    assert outcome.token_expires_at == datetime.fromisoformat(first["expires_at"])
    assert isinstance(outcome.error, CXoneUnavailableError)
    assert outcome.error_type == "CXoneUnavailableError"
    assert "status page" in (outcome.error_message or "")
    assert stored_token(secrets, settings) == first


@pytest.mark.usefixtures("stored_credentials")
def test_failed_refresh_with_an_expired_token_says_none_remains(
    secrets: Any,
    settings: Settings,
    cxone_settings: CXoneSettings,
    client: CXoneClient,
    clock: Clock,
    stand_in: CXoneStandIn,
) -> None:
    refresh(secrets, settings, cxone_settings, client, clock)
    clock.advance(TTL + 1)
    stand_in.fail_next(TOKEN_PATH, 401)

    outcome = refresh(secrets, settings, cxone_settings, client, clock)

    assert outcome.status == "failed_expired"
    assert not outcome.has_valid_token and outcome.token_expires_at is None
    assert isinstance(outcome.error, CXoneAuthError)
    assert "client id and secret" in (outcome.error_message or "")
    assert outcome.log_fields()["refresh_status"] == "failed_expired"


def test_missing_credentials_secret_is_a_failure_that_says_how_to_store_them(
    secrets: Any,
    settings: Settings,
    cxone_settings: CXoneSettings,
    client: CXoneClient,
    clock: Clock,
    stand_in: CXoneStandIn,
) -> None:
    outcome = refresh(secrets, settings, cxone_settings, client, clock)

    assert outcome.status == "failed_expired"
    assert isinstance(outcome.error, CredentialsError)
    assert settings.names.credentials_secret in (outcome.error_message or "")
    assert "scripts.provision credentials" in (outcome.error_message or "")
    assert stand_in.count(TOKEN_PATH) == 0


def test_credentials_of_the_wrong_shape_name_the_missing_keys(
    secrets: Any,
    settings: Settings,
    cxone_settings: CXoneSettings,
    client: CXoneClient,
    clock: Clock,
    client_secret: str,
) -> None:
    secrets.create_secret(
        Name=settings.names.credentials_secret,
        SecretString=json.dumps({"client_id": CLIENT_ID, "secret": client_secret}),
    )

    outcome = refresh(secrets, settings, cxone_settings, client, clock)

    assert outcome.status == "failed_expired"
    assert "lacks client_secret" in (outcome.error_message or "")
    assert client_secret not in (outcome.error_message or "")


def test_malformed_token_secret_is_replaced(
    secrets: Any,
    settings: Settings,
    cxone_settings: CXoneSettings,
    client: CXoneClient,
    clock: Clock,
    stored_credentials: None,
) -> None:
    secrets.create_secret(Name=settings.names.token_secret, SecretString="not json")

    outcome = refresh(secrets, settings, cxone_settings, client, clock)

    assert outcome.status == "refreshed"
    assert "access_token" in stored_token(secrets, settings)


def test_access_key_mode_refreshes_through_discovery(
    secrets: Any,
    settings: Settings,
    clock: Clock,
    stand_in: CXoneStandIn,
    client_secret: str,
) -> None:
    cxone_settings = cxone_settings_for(
        stand_in, CXONE_AUTH_MODE="access_key", CXONE_TENANT_ID="tenant-42"
    )
    client = CXoneClient(cxone_settings, clock=clock)
    secrets.create_secret(
        Name=settings.names.credentials_secret,
        SecretString=json.dumps(
            {"access_key_id": "ak-relay", "access_key_secret": "aks-" + client_secret}
        ),
    )

    outcome = refresh(secrets, settings, cxone_settings, client, clock)

    assert outcome.status == "refreshed"
    assert stored_token(secrets, settings)["access_token"] in stand_in.issued_tokens()
    assert stand_in.count("/.well-known/openid-configuration") == 1


# --------------------------------------------------------------------------- TokenProvider


def count_secret_reads(secrets: Any) -> list[str]:
    """Record each GetSecretValue the (real) client sends, through botocore's event hooks."""
    reads: list[str] = []
    secrets.meta.events.register(
        "before-parameter-build.secrets-manager.GetSecretValue",
        lambda params, **_: reads.append(params["SecretId"]),
    )
    return reads


def put_token(secrets: Any, settings: Settings, value: str, expires_at: datetime) -> None:
    store_token(secrets, settings.names.token_secret, AccessToken(value, expires_at))


def test_provider_reads_the_secret_once_while_the_token_is_fresh(
    secrets: Any, settings: Settings, clock: Clock
) -> None:
    put_token(secrets, settings, "token-one", clock.now + timedelta(hours=1))
    reads = count_secret_reads(secrets)
    provider = TokenProvider(secrets, settings.names.token_secret, clock=clock)

    values = [provider.get() for _ in range(5)]
    clock.advance(3000)  # 10 minutes left: outside the provider's 5-minute margin
    values.append(provider.get())

    assert values == ["token-one"] * 6
    assert reads == [settings.names.token_secret]


def test_provider_rereads_near_expiry_and_after_invalidate(
    secrets: Any, settings: Settings, clock: Clock
) -> None:
    put_token(secrets, settings, "token-one", clock.now + timedelta(hours=1))
    reads = count_secret_reads(secrets)
    provider = TokenProvider(secrets, settings.names.token_secret, clock=clock)
    assert provider.get() == "token-one"

    put_token(secrets, settings, "token-two", clock.now + timedelta(hours=2))
    assert provider.get() == "token-one"  # cached: still fresh
    clock.advance(3600 - 200)  # inside the margin
    assert provider.get() == "token-two"
    provider.invalidate()
    assert provider.get() == "token-two"

    assert len(reads) == 3


def test_provider_near_expiry_rereads_at_most_every_30_seconds(
    secrets: Any, settings: Settings, clock: Clock
) -> None:
    put_token(secrets, settings, "token-one", clock.now + timedelta(minutes=2))
    reads = count_secret_reads(secrets)
    provider = TokenProvider(secrets, settings.names.token_secret, clock=clock)

    for _ in range(10):
        provider.get()
    clock.advance(31)
    provider.get()

    assert len(reads) == 2


def test_provider_refuses_an_expired_or_missing_token_with_advice(
    secrets: Any, settings: Settings, clock: Clock
) -> None:
    provider = TokenProvider(secrets, settings.names.token_secret, clock=clock)
    with pytest.raises(TokenUnavailableError, match="refresh_token schedule"):
        provider.get()

    put_token(secrets, settings, "token-old", clock.now - timedelta(seconds=1))
    provider.invalidate()
    with pytest.raises(TokenUnavailableError, match="expired") as caught:
        provider.get()
    assert "token-old" not in str(caught.value)


# --------------------------------------------------------------------------- no secret leaks


def test_no_secret_or_token_in_any_log_message_or_exception(
    secrets: Any,
    settings: Settings,
    cxone_settings: CXoneSettings,
    client: CXoneClient,
    clock: Clock,
    stand_in: CXoneStandIn,
    stored_credentials: None,
    client_secret: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every log record (ours at DEBUG, everything else at INFO) and the powertools JSON lines.

    botocore's own DEBUG wire logging prints request bodies by design and is off in Lambda; it
    is outside this check.
    """
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="cxone-relay")
    powertools_handler = logging.getLogger("cxone-relay").powertools_handler
    previous_stream = powertools_handler.setStream(sys.stdout)  # into capsys
    seen: list[str] = []
    try:
        # first token, a fresh run, a refresh near expiry after two 429s, the provider
        seen.append(repr(refresh(secrets, settings, cxone_settings, client, clock)))
        seen.append(repr(refresh(secrets, settings, cxone_settings, client, clock)))
        clock.advance(TTL - 60)
        stand_in.fail_next(TOKEN_PATH, 429, times=2, retry_after=1)
        seen.append(repr(refresh(secrets, settings, cxone_settings, client, clock)))
        provider = TokenProvider(secrets, settings.names.token_secret, clock=clock)
        seen.append(repr(provider.get_token()))
        seen.append(repr(provider))
        # failures: server errors, then refused credentials (the secret is wrong in CXone)
        clock.advance(TTL - 60)
        stand_in.fail_next(TOKEN_PATH, 500, times=3)
        failed = refresh(secrets, settings, cxone_settings, client, clock)
        clock.advance(120)
        stand_in.fail_next(TOKEN_PATH, 401)
        expired = refresh(secrets, settings, cxone_settings, client, clock)
        for outcome in (failed, expired):
            assert outcome.error is not None
            seen += [repr(outcome), json.dumps(outcome.log_fields()), repr(outcome.error)]
            seen.append("".join(traceback.format_exception(outcome.error)))
        assert (failed.status, expired.status) == ("failed_kept_valid", "failed_expired")
    finally:
        powertools_handler.setStream(previous_stream)

    captured = capsys.readouterr()
    records = [record.getMessage() + repr(vars(record)) for record in caplog.records]
    haystack = "\n".join([*seen, *records, caplog.text, captured.out, captured.err])
    tokens = stand_in.issued_tokens()
    assert len(tokens) == 2
    assert "obtained a CXone access token" in captured.out  # the JSON lines were captured
    assert any("retrying" in record.getMessage() for record in caplog.records)
    for needle in [client_secret, *tokens]:
        assert needle not in haystack

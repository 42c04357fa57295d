"""The CXone client against the local stand-in, over real HTTP.

Faults (401/403/429/500/slow) are the stand-in's own answers, injected with `fail_next`; the
client's sleep is injected so retries are instant and their waits can be asserted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests

from chalicelib.config import CXONE_DETAIL_TYPES, ConfigError
from chalicelib.cxone.client import (
    AccessKeyCredentials,
    AccessToken,
    ClientCredentials,
    CXoneAuthError,
    CXoneClient,
    CXonePermissionError,
    CXoneProtocolError,
    CXoneRateLimitError,
    CXoneRequestError,
    CXoneSettings,
    CXoneUnavailableError,
    load_cxone_settings,
    retry_after_seconds,
)
from scripts.local.cxone_standin import CXONE_CONFIG_PATH, OPENID_PATH, TOKEN_PATH, CXoneStandIn
from scripts.provisioning.cxone_connection import ConnectionSpec, ensure_cxone_connection

CLIENT_ID = "relay-client"
CONNECTIONS_PATH = "/eventbridge/v1/connections"
T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


@pytest.fixture
def client_secret() -> str:
    return "secret-" + uuid.uuid4().hex


@pytest.fixture
def stand_in(client_secret: str) -> Iterator[CXoneStandIn]:
    with CXoneStandIn(
        CLIENT_ID,
        client_secret,
        token_ttl_seconds=1800,
        access_key_id="ak-relay",
        access_key_secret="aks-" + client_secret,
        tenant_id="tenant-42",
        required_scope="eventbridge:write",
    ) as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(
    stand_in: CXoneStandIn,
    sleeps: list[float],
    clock: datetime | None = None,
    **env: str,
) -> CXoneClient:
    settings = load_cxone_settings(
        {
            "CXONE_AUTH_BASE_URL": stand_in.base_url,
            "CXONE_MAX_RETRIES": "3",
            "CXONE_READ_TIMEOUT_SECONDS": "0.3",
            **env,
        }
    )
    kwargs = {"clock": lambda: clock} if clock is not None else {}
    return CXoneClient(settings, sleep=sleeps.append, jitter=lambda: 0.5, **kwargs)


@pytest.fixture
def client(stand_in: CXoneStandIn, sleeps: list[float]) -> CXoneClient:
    return make_client(stand_in, sleeps)


@pytest.fixture
def credentials(client_secret: str) -> ClientCredentials:
    return ClientCredentials(CLIENT_ID, client_secret)


# --------------------------------------------------------------------------- tokens


def test_first_token_expires_after_expires_in(
    client: CXoneClient, credentials: ClientCredentials, stand_in: CXoneStandIn
) -> None:
    before = datetime.now(UTC)
    token = client.fetch_token(credentials)
    after = datetime.now(UTC)

    assert token.value in stand_in.issued_tokens()
    assert before + timedelta(seconds=1800) <= token.expires_at <= after + timedelta(seconds=1800)
    # The token works on the connection API (its scope came from CXONE_SCOPE's default).
    assert client.find_connection(token, "nothing-here") is None


def test_wrong_client_secret_is_an_auth_error_that_says_what_to_check(
    client: CXoneClient, stand_in: CXoneStandIn
) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    with pytest.raises(CXoneAuthError) as caught:
        client.fetch_token(ClientCredentials(CLIENT_ID, wrong))

    message = str(caught.value)
    assert caught.value.status == 401
    assert "client id and secret" in message
    assert "credentials secret" in message
    assert wrong not in message and wrong not in repr(caught.value)
    assert stand_in.count(TOKEN_PATH) == 1  # a 401 is not retried


def test_missing_scope_is_a_permission_error_naming_the_scope(
    stand_in: CXoneStandIn, sleeps: list[float], credentials: ClientCredentials
) -> None:
    client = make_client(stand_in, sleeps, CXONE_SCOPE="")
    token = client.fetch_token(credentials)

    with pytest.raises(CXonePermissionError) as caught:
        client.find_connection(token, "relay")

    assert caught.value.status == 403
    assert "scope" in str(caught.value) and "eventbridge:write" in str(caught.value)
    assert "role" in str(caught.value)


def test_injected_403_on_creation_is_a_permission_error(
    client: CXoneClient, credentials: ClientCredentials, stand_in: CXoneStandIn
) -> None:
    token = client.fetch_token(credentials)
    stand_in.fail_next(CONNECTIONS_PATH, 403)

    with pytest.raises(CXonePermissionError, match="check the scope"):
        client.create_connection(
            token, ConnectionSpec("c", "bus", "123456789012", "r").request_body()
        )
    assert stand_in.connections == {}


def test_expired_token_on_the_api_is_an_auth_error_about_the_token(
    client: CXoneClient, credentials: ClientCredentials, stand_in: CXoneStandIn
) -> None:
    token = client.fetch_token(credentials)
    stand_in.expire_tokens()

    with pytest.raises(CXoneAuthError, match="refused the access token") as caught:
        client.find_connection(token, "relay")
    assert token.value not in str(caught.value)


def test_429_waits_the_retry_after_seconds_then_succeeds(
    client: CXoneClient,
    credentials: ClientCredentials,
    stand_in: CXoneStandIn,
    sleeps: list[float],
) -> None:
    stand_in.fail_next(TOKEN_PATH, 429, retry_after=7)

    token = client.fetch_token(credentials)

    assert token.value in stand_in.issued_tokens()
    assert sleeps == [7.0]
    assert stand_in.count(TOKEN_PATH) == 2


def test_429_retry_after_as_an_http_date_is_honoured(
    stand_in: CXoneStandIn, sleeps: list[float], credentials: ClientCredentials
) -> None:
    client = make_client(stand_in, sleeps, clock=T0)
    stand_in.fail_next(
        TOKEN_PATH, 429, retry_after=format_datetime(T0 + timedelta(seconds=4), True)
    )

    client.fetch_token(credentials)

    assert sleeps == [4.0]


def test_429_that_persists_is_a_rate_limit_error_after_the_retries(
    client: CXoneClient,
    credentials: ClientCredentials,
    stand_in: CXoneStandIn,
    sleeps: list[float],
) -> None:
    stand_in.fail_next(TOKEN_PATH, 429, times=10, retry_after=1)

    with pytest.raises(CXoneRateLimitError, match="try again later") as caught:
        client.fetch_token(credentials)

    assert stand_in.count(TOKEN_PATH) == 4  # CXONE_MAX_RETRIES=3
    assert sleeps == [1.0, 1.0, 1.0]
    assert caught.value.retry_after_seconds == 1.0


def test_retry_after_longer_than_the_cap_gives_up_at_once(
    client: CXoneClient,
    credentials: ClientCredentials,
    stand_in: CXoneStandIn,
    sleeps: list[float],
) -> None:
    stand_in.fail_next(TOKEN_PATH, 429, retry_after=3600)

    with pytest.raises(CXoneRateLimitError, match="CXONE_MAX_RETRY_WAIT_SECONDS"):
        client.fetch_token(credentials)

    assert sleeps == []
    assert stand_in.count(TOKEN_PATH) == 1


def test_500_is_retried_with_growing_backoff(
    client: CXoneClient,
    credentials: ClientCredentials,
    stand_in: CXoneStandIn,
    sleeps: list[float],
) -> None:
    stand_in.fail_next(TOKEN_PATH, 500, times=2)

    client.fetch_token(credentials)

    # base 0.5 s doubling, jitter fixed at the middle (factor 0.75)
    assert sleeps == [0.375, 0.75]


def test_500_that_persists_is_unavailable_with_advice(
    client: CXoneClient, credentials: ClientCredentials, stand_in: CXoneStandIn
) -> None:
    stand_in.fail_next(TOKEN_PATH, 503, times=10)

    with pytest.raises(CXoneUnavailableError, match="after 4 attempt") as caught:
        client.fetch_token(credentials)

    assert "status page" in str(caught.value)
    assert caught.value.status == 503


def test_slow_answer_times_out_and_is_retried(
    client: CXoneClient,
    credentials: ClientCredentials,
    stand_in: CXoneStandIn,
    sleeps: list[float],
) -> None:
    stand_in.fail_next(TOKEN_PATH, None, delay=1.0)  # answers normally, but after 1 s

    token = client.fetch_token(credentials)

    assert token.value in stand_in.issued_tokens()
    assert len(sleeps) == 1


def test_slow_answers_that_persist_are_unavailable(
    stand_in: CXoneStandIn, sleeps: list[float], credentials: ClientCredentials
) -> None:
    client = make_client(stand_in, sleeps, CXONE_MAX_RETRIES="1")
    stand_in.fail_next(TOKEN_PATH, None, times=2, delay=1.0)

    with pytest.raises(CXoneUnavailableError, match=r"no answer within 0\.3 s"):
        client.fetch_token(credentials)


def test_creation_is_not_retried_after_a_server_error(
    client: CXoneClient, credentials: ClientCredentials, stand_in: CXoneStandIn
) -> None:
    token = client.fetch_token(credentials)
    stand_in.fail_next(CONNECTIONS_PATH, 500)
    body = ConnectionSpec("c", "bus", "123456789012", "us-east-1").request_body()

    with pytest.raises(CXoneUnavailableError, match="re-run"):
        client.create_connection(token, body)

    assert stand_in.count(CONNECTIONS_PATH) == 1


def test_answer_without_access_token_is_a_protocol_error(
    client: CXoneClient, credentials: ClientCredentials, stand_in: CXoneStandIn
) -> None:
    stand_in.fail_next(TOKEN_PATH, 200)  # 200 with a body that is no token

    with pytest.raises(CXoneProtocolError, match="CXONE_TOKEN_PATH"):
        client.fetch_token(credentials)


def test_unknown_path_is_a_request_error_naming_the_settings(
    stand_in: CXoneStandIn, sleeps: list[float], credentials: ClientCredentials
) -> None:
    client = make_client(stand_in, sleeps, CXONE_CONNECTION_PATH="/nowhere")
    token = client.fetch_token(credentials)

    with pytest.raises(CXoneRequestError, match="CXONE_CONNECTION_PATH"):
        client.find_connection(token, "relay")


def test_redirect_is_not_followed(
    client: CXoneClient, credentials: ClientCredentials, stand_in: CXoneStandIn
) -> None:
    # Following a 307 would re-send the token form, secret included, to another host.
    stand_in.fail_next(TOKEN_PATH, 307)

    with pytest.raises(CXoneRequestError, match="redirects"):
        client.fetch_token(credentials)
    assert stand_in.count(TOKEN_PATH) == 1


def test_stand_in_accepts_a_json_token_request(stand_in: CXoneStandIn, client_secret: str) -> None:
    url = stand_in.base_url + TOKEN_PATH
    good = {"grant_type": "client_credentials", "client_id": CLIENT_ID}

    accepted = requests.post(url, json={**good, "client_secret": client_secret}, timeout=5)
    refused = requests.post(url, json={**good, "client_secret": "nope"}, timeout=5)

    assert accepted.status_code == 200 and accepted.json()["expires_in"] == 1800
    assert refused.status_code == 401


# --------------------------------------------------------------------------- access-key flow


def test_access_key_flow_discovers_the_token_endpoint_and_the_api_host(
    stand_in: CXoneStandIn, sleeps: list[float], client_secret: str
) -> None:
    client = make_client(
        stand_in, sleeps, CXONE_AUTH_MODE="access_key", CXONE_TENANT_ID="tenant-42"
    )
    credentials = AccessKeyCredentials("ak-relay", "aks-" + client_secret, CLIENT_ID, client_secret)

    first = client.fetch_token(credentials)
    second = client.fetch_token(credentials)

    assert client.token_endpoint() == stand_in.base_url + TOKEN_PATH
    assert first.value != second.value
    assert client.find_connection(second, "relay") is None
    assert client.api_base_url() == stand_in.base_url
    # Discovery documents are read once per client, not per call.
    assert stand_in.count(OPENID_PATH) == 1
    assert stand_in.count(CXONE_CONFIG_PATH) == 1


def test_wrong_access_key_is_an_auth_error_about_the_access_key(
    stand_in: CXoneStandIn, sleeps: list[float], client_secret: str
) -> None:
    client = make_client(
        stand_in, sleeps, CXONE_AUTH_MODE="access_key", CXONE_TENANT_ID="tenant-42"
    )
    wrong = "wrong-" + uuid.uuid4().hex

    with pytest.raises(CXoneAuthError, match="access key id and secret") as caught:
        client.fetch_token(AccessKeyCredentials("ak-relay", wrong))

    assert "invalid_grant" in str(caught.value)
    assert wrong not in str(caught.value)


def test_unknown_tenant_names_the_tenant_setting(
    stand_in: CXoneStandIn, sleeps: list[float], credentials: ClientCredentials
) -> None:
    client = make_client(stand_in, sleeps, CXONE_TENANT_ID="nobody")
    token = client.fetch_token(credentials)

    with pytest.raises(CXoneRequestError, match="CXONE_TENANT_ID"):
        client.find_connection(token, "relay")


def test_credentials_of_the_other_mode_are_refused_before_any_request(
    stand_in: CXoneStandIn, sleeps: list[float], credentials: ClientCredentials
) -> None:
    client = make_client(
        stand_in, sleeps, CXONE_AUTH_MODE="access_key", CXONE_TENANT_ID="tenant-42"
    )

    with pytest.raises(CXoneAuthError, match="CXONE_AUTH_MODE"):
        client.fetch_token(credentials)
    assert stand_in.count(TOKEN_PATH) == 0


# --------------------------------------------------------------------------- settings, pure parts


def test_settings_defaults_follow_cxone_documentation() -> None:
    settings = load_cxone_settings({})

    assert settings == CXoneSettings()
    assert settings.auth_base_url == "https://cxone.niceincontact.com"
    assert settings.token_path == "/auth/token"
    assert settings.refresh_margin_seconds == 600


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CXONE_AUTH_MODE", "password"),
        ("CXONE_AUTH_BASE_URL", "http://cxone.example.com"),
        ("CXONE_API_BASE_URL", "ftp://api.example.com"),
        ("CXONE_TOKEN_PATH", "auth/token"),
        ("CXONE_CONNECTION_PATH", "/a b"),
        ("CXONE_READ_TIMEOUT_SECONDS", "soon"),
        ("CXONE_CONNECT_TIMEOUT_SECONDS", "0"),
        ("CXONE_MAX_RETRIES", "-1"),
        ("CXONE_MAX_RETRY_WAIT_SECONDS", "nan"),
        ("CXONE_REFRESH_MARGIN_SECONDS", "10m"),
        ("CXONE_TENANT_ID", "a/b"),
    ],
)
def test_malformed_setting_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_cxone_settings({variable: value})


def test_access_key_mode_needs_a_tenant_or_an_api_host() -> None:
    with pytest.raises(ConfigError, match="CXONE_TENANT_ID"):
        load_cxone_settings({"CXONE_AUTH_MODE": "access_key"})


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert retry_after_seconds("12", T0) == 12.0
    assert retry_after_seconds(format_datetime(T0 + timedelta(seconds=30), True), T0) == 30.0
    assert retry_after_seconds(format_datetime(T0 - timedelta(seconds=30), True), T0) == 0.0
    assert retry_after_seconds("soon", T0) is None
    assert retry_after_seconds(None, T0) is None


def test_reprs_hide_secrets_and_token_values() -> None:
    credentials = ClientCredentials("id", "client-secret-value")
    access_key = AccessKeyCredentials("ak", "access-key-secret", "id", "app-secret")
    token = AccessToken("token-value-123", T0)

    for shown in (repr(credentials), repr(access_key), repr(token), str(token)):
        for hidden in ("client-secret-value", "access-key-secret", "app-secret", "token-value"):
            assert hidden not in shown
    assert "2026-11-29T09:00:00.000Z" in repr(token)


# --------------------------------------------------------------------------- provisioning step


def spec_for(name: str) -> ConnectionSpec:
    return ConnectionSpec(
        name=name,
        event_bus_name="relay-dev-bus",
        aws_account_id="123456789012",
        aws_region="us-east-1",
    )


def test_ensure_connection_creates_once_then_finds_it(
    client: CXoneClient, credentials: ClientCredentials, stand_in: CXoneStandIn
) -> None:
    token = client.fetch_token(credentials)

    first = ensure_cxone_connection(client, token, spec_for("relay-dev"), dry_run=False)
    second = ensure_cxone_connection(client, token, spec_for("relay-dev"), dry_run=False)

    assert (first.status, first.changed) == ("created", True)
    assert (second.status, second.changed) == ("present", False)
    assert list(stand_in.connections) == ["relay-dev"]
    stored = stand_in.connections["relay-dev"]
    assert stored["eventBusName"] == "relay-dev-bus"
    assert stored["awsAccountId"] == "123456789012"
    assert stored["awsRegion"] == "us-east-1"
    assert stored["eventTypes"] == list(CXONE_DETAIL_TYPES)
    assert stored["id"] in first.detail and stored["id"] in second.detail


def test_ensure_connection_dry_run_creates_nothing(
    client: CXoneClient, credentials: ClientCredentials, stand_in: CXoneStandIn
) -> None:
    token = client.fetch_token(credentials)

    action = ensure_cxone_connection(client, token, spec_for("relay-dev"), dry_run=True)

    assert action.status == "would create" and not action.changed
    assert stand_in.connections == {}


def test_ensure_connection_reports_an_existing_one_that_differs(
    client: CXoneClient, credentials: ClientCredentials
) -> None:
    token = client.fetch_token(credentials)
    ensure_cxone_connection(client, token, spec_for("relay-dev"), dry_run=False)
    moved = ConnectionSpec("relay-dev", "other-bus", "123456789012", "us-east-1")

    action = ensure_cxone_connection(client, token, moved, dry_run=True)

    assert action.status == "present"
    assert "eventBusName is 'relay-dev-bus', wanted 'other-bus'" in action.detail

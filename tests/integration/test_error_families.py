"""A caller that catches an error family catches CXone's real failures, over real HTTP.

The local CXone stand-in answers with the faults (`fail_next`); the client's sleep is
injected so its retries take no time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from chalicelib.cxone.client import ClientCredentials, CXoneClient, load_cxone_settings
from chalicelib.errors import BadRequest, ConfigurationError, DependencyUnavailable
from scripts.local.cxone_standin import TOKEN_PATH, CXoneStandIn

CLIENT_ID = "relay-client"


@pytest.fixture
def secret() -> str:
    return "secret-" + uuid.uuid4().hex


@pytest.fixture
def stand_in(secret: str) -> Iterator[CXoneStandIn]:
    with CXoneStandIn(CLIENT_ID, secret, required_scope="eventbridge:write") as server:
        yield server


def _client(stand_in: CXoneStandIn, **env: str) -> CXoneClient:
    settings = load_cxone_settings(
        {"CXONE_AUTH_BASE_URL": stand_in.base_url, "CXONE_MAX_RETRIES": "2", **env}
    )
    return CXoneClient(settings, sleep=lambda _seconds: None, jitter=lambda: 0.5)


def test_except_dependency_unavailable_catches_a_cxone_503(
    stand_in: CXoneStandIn, secret: str
) -> None:
    stand_in.fail_next(TOKEN_PATH, 503, times=3)

    with pytest.raises(DependencyUnavailable) as caught:
        _client(stand_in).fetch_token(ClientCredentials(CLIENT_ID, secret))

    assert "after 3 attempt" in str(caught.value)
    assert stand_in.count(TOKEN_PATH) == 3


def test_except_dependency_unavailable_catches_a_cxone_429_after_the_retries(
    stand_in: CXoneStandIn, secret: str
) -> None:
    stand_in.fail_next(TOKEN_PATH, 429, times=3, retry_after=1)

    with pytest.raises(DependencyUnavailable):
        _client(stand_in).fetch_token(ClientCredentials(CLIENT_ID, secret))


def test_except_configuration_error_catches_wrong_cxone_credentials(
    stand_in: CXoneStandIn,
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _client(stand_in).fetch_token(ClientCredentials(CLIENT_ID, "not-the-secret"))

    assert "not-the-secret" not in str(caught.value)


def test_except_bad_request_catches_a_request_cxone_refuses(
    stand_in: CXoneStandIn, secret: str
) -> None:
    client = _client(stand_in, CXONE_CONNECTION_PATH="/nowhere")
    token = client.fetch_token(ClientCredentials(CLIENT_ID, secret))

    with pytest.raises(BadRequest, match="CXONE_CONNECTION_PATH"):
        client.find_connection(token, "relay")

"""CXone HTTP client: OAuth tokens and the EventBridge connection API.

Two ways to log in, chosen by `CXONE_AUTH_MODE`:

- `client_credentials` (default): the integration guide's way. POST
  `{CXONE_AUTH_BASE_URL}{CXONE_TOKEN_PATH}` with `grant_type=client_credentials`, the client id,
  secret and scope.
- `access_key`: CXone's documented flow for back-end apps. The token endpoint comes from OpenID
  discovery at `{CXONE_AUTH_BASE_URL}/.well-known/openid-configuration`; the access key id and
  secret go in a password grant (with the app registration's client id and secret when given);
  the tenant's API host comes from `/.well-known/cxone-configuration?tenantId=…`.

Every call has a timeout and TLS verification; 429 and 5xx are retried with a backoff that
honours `Retry-After`. Each failure has its own exception class with a message that says what to
check. No message or log ever holds a secret, a token or a request body: response bodies are not
echoed either, because CXone may reflect what it was sent.
"""

from __future__ import annotations

import ipaddress
import math
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from chalicelib.aws import compute_backoff
from chalicelib.config import ConfigError, env_int
from chalicelib.errors import BadRequest, ConfigurationError, DependencyUnavailable, RelayError
from chalicelib.formats import rfc3339, utc_now
from chalicelib.telemetry import logger

AUTH_MODE_CLIENT_CREDENTIALS = "client_credentials"
AUTH_MODE_ACCESS_KEY = "access_key"
AUTH_MODES = (AUTH_MODE_CLIENT_CREDENTIALS, AUTH_MODE_ACCESS_KEY)

DEFAULT_AUTH_BASE_URL = "https://cxone.niceincontact.com"
DEFAULT_TOKEN_PATH = "/auth/token"
# The connection API is the one the integration guide describes; CXone documents no EventBridge
# connection endpoint we could verify, so the path is a setting (CXONE_CONNECTION_PATH).
DEFAULT_CONNECTION_PATH = "/eventbridge/v1/connections"
DEFAULT_SCOPE = "eventbridge:write"
OPENID_DISCOVERY_PATH = "/.well-known/openid-configuration"
CXONE_DISCOVERY_PATH = "/.well-known/cxone-configuration"

# Hosts where plain HTTP is acceptable (the local stand-in); anywhere else a secret would
# cross the network in the clear.
_LOOPBACK_NAMES = ("localhost",)
_OAUTH_ERROR_CODE = re.compile(r"^[a-z_]{1,64}$")
# RFC 6749 5.2: a token endpoint answers 400 (not 401) for a bad grant such as a wrong access key.
_OAUTH_CREDENTIAL_ERRORS = ("invalid_client", "invalid_grant", "unauthorized_client")


# --------------------------------------------------------------------------- exceptions


class CXoneError(RelayError):
    """Any failure talking to CXone; the message says what to check and holds no secret.

    Each subclass is also in the family that says what to do about it: fix the configuration
    (credentials, scope), retry later (rate limit, outage, a broken answer), or fix the
    request.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CXoneAuthError(CXoneError, ConfigurationError):
    """401 (or an OAuth invalid_client/invalid_grant): the credentials or the token."""


class CXonePermissionError(CXoneError, ConfigurationError):
    """403 (or an OAuth invalid_scope): the client's scope or role does not allow the call."""


class CXoneRateLimitError(CXoneError, DependencyUnavailable):
    """429 still returned after the retries, or a Retry-After longer than we may wait."""

    def __init__(self, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message, status=429)
        self.retry_after_seconds = retry_after_seconds


class CXoneUnavailableError(CXoneError, DependencyUnavailable):
    """5xx, timeouts or connection failures still happening after the retries."""


class CXoneProtocolError(CXoneError, DependencyUnavailable):
    """CXone answered, but not with what the API promises (not JSON, missing fields)."""


class CXoneRequestError(CXoneError, BadRequest):
    """Another 4xx: CXone refused the request itself (bad field, conflict, unknown path)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        # BadRequest's signature (errors by field), not CXoneError's, is next in line after
        # CXoneError, so both are initialised here by name; the message stays CXone's own.
        BadRequest.__init__(self, {"cxone": [message]}, message=message)
        self.status = status


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class CXoneSettings:
    """How to reach CXone; built by `load_cxone_settings` from `CXONE_*` variables."""

    auth_mode: str = AUTH_MODE_CLIENT_CREDENTIALS
    auth_base_url: str = DEFAULT_AUTH_BASE_URL
    token_path: str = DEFAULT_TOKEN_PATH
    # None: the tenant's API host from discovery when a tenant id is set, else auth_base_url.
    api_base_url: str | None = None
    connection_path: str = DEFAULT_CONNECTION_PATH
    tenant_id: str | None = None
    scope: str | None = DEFAULT_SCOPE
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 15.0
    max_retries: int = 3
    backoff_base_seconds: float = 0.5
    # The longest single wait, computed or asked for by Retry-After. A longer Retry-After is not
    # worth blocking a Lambda for: we give up and the next scheduled run tries again.
    max_retry_wait_seconds: float = 20.0
    refresh_margin_seconds: int = 600

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout_seconds, self.read_timeout_seconds)


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(variable: str, url: str) -> str:
    """An absolute https URL (http only for a loopback host), without a trailing slash."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url.rstrip("/")
    if parts.scheme == "http" and _is_loopback(host):
        return url.rstrip("/")
    raise ConfigError(
        f"{variable} must be an https:// URL (http:// only for localhost), got {url!r}"
    )


def _path(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name) or default
    if not value.startswith("/") or any(ch.isspace() for ch in value):
        raise ConfigError(f"{name} must be a path starting with '/', got {value!r}")
    return value


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name} must be a finite number of at least {minimum}, got {raw!r}")
    return value


def load_cxone_settings(env: Mapping[str, str] | None = None) -> CXoneSettings:
    """Build the CXone settings from `env` (default: the process environment).

    Variables: CXONE_AUTH_MODE, CXONE_AUTH_BASE_URL, CXONE_TOKEN_PATH, CXONE_API_BASE_URL,
    CXONE_CONNECTION_PATH, CXONE_TENANT_ID, CXONE_SCOPE (empty: send none),
    CXONE_CONNECT_TIMEOUT_SECONDS, CXONE_READ_TIMEOUT_SECONDS, CXONE_MAX_RETRIES,
    CXONE_BACKOFF_BASE_SECONDS, CXONE_MAX_RETRY_WAIT_SECONDS, CXONE_REFRESH_MARGIN_SECONDS.
    A malformed value raises ConfigError naming the variable.
    """
    env = os.environ if env is None else env
    mode = env.get("CXONE_AUTH_MODE") or AUTH_MODE_CLIENT_CREDENTIALS
    if mode not in AUTH_MODES:
        raise ConfigError(f"CXONE_AUTH_MODE must be one of {', '.join(AUTH_MODES)}, got {mode!r}")
    auth_base_url = check_base_url(
        "CXONE_AUTH_BASE_URL", env.get("CXONE_AUTH_BASE_URL") or DEFAULT_AUTH_BASE_URL
    )
    api_base_url = env.get("CXONE_API_BASE_URL") or None
    if api_base_url is not None:
        api_base_url = check_base_url("CXONE_API_BASE_URL", api_base_url)
    tenant_id = env.get("CXONE_TENANT_ID") or None
    if tenant_id is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", tenant_id):
        raise ConfigError("CXONE_TENANT_ID must be 1-128 letters, digits, '.', '_' or '-'")
    if mode == AUTH_MODE_ACCESS_KEY and api_base_url is None and tenant_id is None:
        raise ConfigError(
            "CXONE_AUTH_MODE=access_key needs CXONE_TENANT_ID (to discover the tenant's API "
            "host) or CXONE_API_BASE_URL"
        )
    scope = env.get("CXONE_SCOPE", DEFAULT_SCOPE).strip() or None
    return CXoneSettings(
        auth_mode=mode,
        auth_base_url=auth_base_url,
        token_path=_path(env, "CXONE_TOKEN_PATH", DEFAULT_TOKEN_PATH),
        api_base_url=api_base_url,
        connection_path=_path(env, "CXONE_CONNECTION_PATH", DEFAULT_CONNECTION_PATH),
        tenant_id=tenant_id,
        scope=scope,
        connect_timeout_seconds=_number(env, "CXONE_CONNECT_TIMEOUT_SECONDS", 5.0, 0.1),
        read_timeout_seconds=_number(env, "CXONE_READ_TIMEOUT_SECONDS", 15.0, 0.1),
        max_retries=env_int(env, "CXONE_MAX_RETRIES", 3, 0),
        backoff_base_seconds=_number(env, "CXONE_BACKOFF_BASE_SECONDS", 0.5, 0.0),
        max_retry_wait_seconds=_number(env, "CXONE_MAX_RETRY_WAIT_SECONDS", 20.0, 0.0),
        refresh_margin_seconds=env_int(env, "CXONE_REFRESH_MARGIN_SECONDS", 600, 0),
    )


# --------------------------------------------------------------------------- credentials, tokens


@dataclass(frozen=True)
class ClientCredentials:
    """An OAuth client (client_credentials mode)."""

    client_id: str
    client_secret: str = field(repr=False)

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, client_secret=<redacted>)"


@dataclass(frozen=True)
class AccessKeyCredentials:
    """A CXone access key (access_key mode), with the app registration's client when given."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"AccessKeyCredentials(access_key_id={self.access_key_id!r}, "
            f"access_key_secret=<redacted>, client_id={self.client_id!r}, "
            f"client_secret={'<redacted>' if self.client_secret else None})"
        )


CXoneCredentials = ClientCredentials | AccessKeyCredentials


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and when it expires (UTC). Its repr and str never show the value."""

    value: str = field(repr=False)
    expires_at: datetime
    token_type: str = "Bearer"

    def __repr__(self) -> str:
        return (
            f"AccessToken(token_type={self.token_type!r}, "
            f"expires_at={rfc3339(self.expires_at)!r}, value=<redacted>)"
        )

    __str__ = __repr__

    def seconds_left(self, now: datetime) -> float:
        return (self.expires_at - now).total_seconds()

    def is_valid_at(self, now: datetime) -> bool:
        return self.seconds_left(now) > 0

    def authorization_header(self) -> str:
        # CXone, like most OAuth servers, returns "bearer" in lower case; the header wants Bearer.
        scheme = "Bearer" if self.token_type.lower() == "bearer" else self.token_type
        return f"{scheme} {self.value}"


def access_token_from_response(body: Any, requested_at: datetime) -> AccessToken:
    """Parse an OAuth token response; `expires_in` counts from when we sent the request."""
    if not isinstance(body, dict):
        raise CXoneProtocolError(
            "the token endpoint answered with JSON that is not an object; check that "
            "CXONE_AUTH_BASE_URL and CXONE_TOKEN_PATH point at the CXone token endpoint"
        )
    value = body.get("access_token")
    if not isinstance(value, str) or not value:
        raise CXoneProtocolError(
            "the token endpoint's answer has no access_token; check that CXONE_AUTH_BASE_URL "
            "and CXONE_TOKEN_PATH point at the CXone token endpoint"
        )
    expires_in = body.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
        raise CXoneProtocolError(
            "the token endpoint's answer has no positive whole expires_in, so the token's "
            "expiry is unknown; check the token endpoint (CXONE_AUTH_BASE_URL, CXONE_TOKEN_PATH)"
        )
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or not token_type:
        token_type = "Bearer"
    return AccessToken(
        value=value,
        expires_at=requested_at + timedelta(seconds=expires_in),
        token_type=token_type,
    )


# --------------------------------------------------------------------------- retry policy


def retry_after_seconds(header: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP date), None if absent."""
    if header is None:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


# --------------------------------------------------------------------------- client


@dataclass(frozen=True)
class _Call:
    """What the client is doing, for messages: never holds a body or a header."""

    purpose: str  # "token request", "connection lookup", …
    url: str
    is_token_endpoint: bool = False
    retry_server_errors: bool = True
    not_found_is_an_answer: bool = False  # discovery: 404 means "no such tenant"

    @property
    def where(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"


class CXoneClient:
    """CXone over one `requests.Session`; `sleep`, `clock` and `jitter` are injectable."""

    def __init__(
        self,
        settings: CXoneSettings,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = utc_now,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._token_endpoint: str | None = None
        self._api_base_url: str | None = settings.api_base_url

    # ----------------------------------------------------------------- discovery

    def token_endpoint(self) -> str:
        """The token URL: configured, or (access_key mode) from OpenID discovery, cached."""
        if self._token_endpoint is None:
            if self.settings.auth_mode == AUTH_MODE_ACCESS_KEY:
                self._token_endpoint = self._discover_token_endpoint()
            else:
                self._token_endpoint = self.settings.auth_base_url + self.settings.token_path
        return self._token_endpoint

    def api_base_url(self) -> str:
        """The API host: configured, else the tenant's from discovery, else the auth host."""
        if self._api_base_url is None:
            if self.settings.tenant_id is not None:
                self._api_base_url = self._discover_api_base_url(self.settings.tenant_id)
            else:
                self._api_base_url = self.settings.auth_base_url
        return self._api_base_url

    def _discover_token_endpoint(self) -> str:
        url = self.settings.auth_base_url + OPENID_DISCOVERY_PATH
        document = self._json_object(self._send("GET", _Call("OpenID discovery", url)), url)
        endpoint = document.get("token_endpoint")
        if not isinstance(endpoint, str):
            raise CXoneProtocolError(
                f"the OpenID configuration at {url} has no token_endpoint; check "
                "CXONE_AUTH_BASE_URL (it should be the CXone login host)"
            )
        return self._checked_discovered_url(endpoint, "token_endpoint", url)

    def _discover_api_base_url(self, tenant_id: str) -> str:
        url = self.settings.auth_base_url + CXONE_DISCOVERY_PATH
        call = _Call("CXone tenant discovery", url, not_found_is_an_answer=True)
        response = self._send("GET", call, params={"tenantId": tenant_id})
        if response.status_code == 404:
            raise CXoneRequestError(
                f"CXone does not know tenant {tenant_id!r} ({call.where} answered 404); check "
                "CXONE_TENANT_ID and that CXONE_AUTH_BASE_URL is the tenant's environment",
                status=404,
            )
        document = self._json_object(response, url)
        endpoint = document.get("api_endpoint")
        if not isinstance(endpoint, str):
            raise CXoneProtocolError(
                f"the CXone configuration at {url} has no api_endpoint; set CXONE_API_BASE_URL "
                "to the tenant's API host instead"
            )
        return self._checked_discovered_url(endpoint, "api_endpoint", url)

    @staticmethod
    def _checked_discovered_url(value: str, key: str, source: str) -> str:
        try:
            return check_base_url(key, value)
        except ConfigError:
            raise CXoneProtocolError(
                f"{source} gave a {key} that is not an https URL ({value!r}); check "
                "CXONE_AUTH_BASE_URL"
            ) from None

    # ----------------------------------------------------------------- tokens

    def fetch_token(self, credentials: CXoneCredentials) -> AccessToken:
        """Obtain a new access token; its expiry counts from before the request was sent."""
        form = self._token_form(credentials)
        call = _Call("token request", self.token_endpoint(), is_token_endpoint=True)
        requested_at = self._clock()
        response = self._send("POST", call, data=form)
        body = self._json_body(response, call)
        token = access_token_from_response(body, requested_at)
        logger.info(
            "obtained a CXone access token",
            extra={"token_expires_at": rfc3339(token.expires_at), "auth_mode": self.mode},
        )
        return token

    @property
    def mode(self) -> str:
        return self.settings.auth_mode

    def _token_form(self, credentials: CXoneCredentials) -> dict[str, str]:
        form: dict[str, str]
        if self.settings.auth_mode == AUTH_MODE_ACCESS_KEY:
            if not isinstance(credentials, AccessKeyCredentials):
                raise CXoneAuthError(
                    "CXONE_AUTH_MODE is access_key but the credentials are a client id and "
                    "secret; store access_key_id and access_key_secret, or set "
                    "CXONE_AUTH_MODE=client_credentials"
                )
            form = {
                "grant_type": "password",
                "username": credentials.access_key_id,
                "password": credentials.access_key_secret,
            }
            if credentials.client_id and credentials.client_secret:
                form["client_id"] = credentials.client_id
                form["client_secret"] = credentials.client_secret
        else:
            if not isinstance(credentials, ClientCredentials):
                raise CXoneAuthError(
                    "CXONE_AUTH_MODE is client_credentials but the credentials are an access "
                    "key; store client_id and client_secret, or set CXONE_AUTH_MODE=access_key"
                )
            form = {
                "grant_type": "client_credentials",
                "client_id": credentials.client_id,
                "client_secret": credentials.client_secret,
            }
        if self.settings.scope:
            form["scope"] = self.settings.scope
        return form

    # ----------------------------------------------------------------- connections

    def connections_url(self) -> str:
        return self.api_base_url() + self.settings.connection_path

    def find_connection(self, token: AccessToken | str, name: str) -> dict[str, Any] | None:
        """The connection called `name`, or None.

        Asks the API to filter by name and still matches exactly here, in case the API ignores
        the filter. The integration guide documents no paging; a paged answer is read as its
        first page only.
        """
        call = _Call("connection lookup", self.connections_url())
        response = self._send("GET", call, token=token, params={"name": name})
        body = self._json_body(response, call)
        for connection in _connection_list(body, call):
            if isinstance(connection, dict) and connection.get("name") == name:
                return connection
        return None

    def create_connection(self, token: AccessToken | str, spec: dict[str, Any]) -> dict[str, Any]:
        """Create a connection; returns what CXone answered (it holds the new `id`).

        A 5xx or timeout is not retried: the connection may have been created, and a blind
        retry could create a second one. Re-running provisioning finds it by name first.
        """
        call = _Call("connection creation", self.connections_url(), retry_server_errors=False)
        response = self._send("POST", call, token=token, json_body=spec)
        body = self._json_body(response, call)
        if not isinstance(body, dict):
            raise CXoneProtocolError(
                f"{call.purpose}: {call.where} answered with JSON that is not an object; "
                "check CXONE_API_BASE_URL and CXONE_CONNECTION_PATH"
            )
        return body

    # ----------------------------------------------------------------- transport

    def _send(
        self,
        method: str,
        call: _Call,
        *,
        token: AccessToken | str | None = None,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> requests.Response:
        """One call with retries; returns a 2xx (or a discovery 404) response, else raises."""
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = (
                token.authorization_header()
                if isinstance(token, AccessToken)
                else f"Bearer {token}"
            )
        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            last_attempt = attempt == attempts - 1
            try:
                response = self.session.request(
                    method,
                    call.url,
                    params=params,
                    data=data,
                    json=json_body,
                    headers=headers,
                    timeout=self.settings.timeout,
                    verify=True,
                    allow_redirects=False,
                )
            except (requests.Timeout, requests.ConnectionError) as error:
                # Not chained: a requests exception keeps the prepared request, whose body is
                # the token form with the secret.
                failure = (
                    f"no answer within {self.settings.read_timeout_seconds:g} s"
                    if isinstance(error, requests.Timeout)
                    else f"could not connect ({type(error).__name__})"
                )
                if last_attempt or not call.retry_server_errors:
                    raise self._unavailable(call, failure, attempt + 1) from None
                self._wait(call, failure, attempt, None)
                continue
            status = response.status_code
            if 200 <= status < 300:
                return response
            if status == 404 and call.not_found_is_an_answer:
                return response
            if status == 429:
                wait = retry_after_seconds(response.headers.get("Retry-After"), self._clock())
                if wait is not None and wait > self.settings.max_retry_wait_seconds:
                    raise CXoneRateLimitError(
                        f"{call.purpose}: CXone rate limit (429 from {call.where}) asks to wait "
                        f"{wait:g} s, longer than CXONE_MAX_RETRY_WAIT_SECONDS "
                        f"({self.settings.max_retry_wait_seconds:g} s); try again later and "
                        "check what else calls CXone with this client",
                        retry_after_seconds=wait,
                    )
                if last_attempt:
                    raise CXoneRateLimitError(
                        f"{call.purpose}: CXone rate limit (429 from {call.where}) still hit "
                        f"after {attempts} attempts; try again later and check what else calls "
                        "CXone with this client",
                        retry_after_seconds=wait,
                    )
                self._wait(call, "rate limited (429)", attempt, wait)
                continue
            if status >= 500:
                failure = f"server error {status}"
                if last_attempt or not call.retry_server_errors:
                    raise self._unavailable(call, failure, attempt + 1, status)
                wait = retry_after_seconds(response.headers.get("Retry-After"), self._clock())
                self._wait(call, failure, attempt, wait)
                continue
            raise self._client_error(call, response)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _wait(self, call: _Call, failure: str, attempt: int, asked: float | None) -> None:
        if asked is not None:
            seconds = min(asked, self.settings.max_retry_wait_seconds)
        else:
            seconds = compute_backoff(
                attempt,
                base=self.settings.backoff_base_seconds,
                cap=self.settings.max_retry_wait_seconds,
                jitter=self._jitter,
            )
        logger.warning(
            "CXone call failed, retrying",
            extra={
                "cxone_call": call.purpose,
                "cxone_url": call.where,
                "failure": failure,
                "attempt": attempt + 1,
                "retry_in_seconds": round(seconds, 3),
            },
        )
        self._sleep(seconds)

    def _unavailable(
        self, call: _Call, failure: str, attempts: int, status: int | None = None
    ) -> CXoneUnavailableError:
        if call.retry_server_errors:
            advice = (
                f"after {attempts} attempt(s); check CXone's status page and network access "
                "from here to that host (VPC egress, proxy, DNS)"
            )
        else:
            advice = (
                "and was not retried because the request may have taken effect; re-run it: "
                "an existing connection is found by name first"
            )
        return CXoneUnavailableError(
            f"{call.purpose}: {call.where}: {failure} {advice}", status=status
        )

    def _client_error(self, call: _Call, response: requests.Response) -> CXoneError:
        status = response.status_code
        oauth_error = _oauth_error_code(response) if call.is_token_endpoint else None
        code = f" ({oauth_error})" if oauth_error else ""
        if status == 401 or oauth_error in (
            "invalid_client",
            "invalid_grant",
            "unauthorized_client",
        ):
            if call.is_token_endpoint:
                what = (
                    "the access key id and secret (and the app's client id and secret)"
                    if self.mode == AUTH_MODE_ACCESS_KEY
                    else "the client id and secret"
                )
                return CXoneAuthError(
                    f"{call.purpose}: CXone refused the credentials ({status}{code} from "
                    f"{call.where}); check {what} in the credentials secret, that they belong to "
                    "this tenant, and that CXONE_AUTH_BASE_URL is the tenant's environment",
                    status=status,
                )
            return CXoneAuthError(
                f"{call.purpose}: CXone refused the access token ({status} from {call.where}); "
                "it expired or was revoked, or comes from another environment: check the "
                "refresh_token schedule's logs and that CXONE_API_BASE_URL belongs to the same "
                "environment as CXONE_AUTH_BASE_URL",
                status=status,
            )
        if status == 403 or oauth_error == "invalid_scope":
            return CXonePermissionError(
                f"{call.purpose}: CXone denied permission ({status}{code} from {call.where}); "
                f"check the scope (CXONE_SCOPE is {self.settings.scope!r}; the connection API "
                "needs eventbridge:write), the role of the API client's user (EventBridge or "
                "Integration Administrator), and that the AWS account matches the CXone tenant's "
                "configuration",
                status=status,
            )
        if 300 <= status < 400:
            # Redirects are not followed: a 307/308 would re-send the token form (with the
            # secret) to wherever the Location points.
            target = urlsplit(response.headers.get("Location", "")).netloc or "elsewhere"
            return CXoneRequestError(
                f"{call.purpose}: {call.where} redirects ({status}) to {target}; set the base URL "
                "(CXONE_AUTH_BASE_URL or CXONE_API_BASE_URL) to the host it points to",
                status=status,
            )
        hint = {
            404: "check CXONE_API_BASE_URL, CXONE_CONNECTION_PATH and CXONE_TOKEN_PATH",
            409: "a resource with that name already exists; re-run to find it by name",
            400: "check the request's fields (connection spec or scope)",
        }.get(status, "check the request and the CXone API documentation")
        return CXoneRequestError(
            f"{call.purpose}: CXone refused the request ({status}{code} from {call.where}); {hint}",
            status=status,
        )

    def _json_body(self, response: requests.Response, call: _Call) -> Any:
        try:
            return response.json()
        except ValueError:
            content_type = response.headers.get("Content-Type", "none")
            raise CXoneProtocolError(
                f"{call.purpose}: {call.where} answered {response.status_code} with a body that "
                f"is not JSON (Content-Type {content_type}, {len(response.content)} bytes); check "
                "that the base URL and path point at the CXone API",
                status=response.status_code,
            ) from None

    def _json_object(self, response: requests.Response, url: str) -> dict[str, Any]:
        body = self._json_body(response, _Call("discovery", url))
        if not isinstance(body, dict):
            raise CXoneProtocolError(
                f"discovery: {url} answered with JSON that is not an object; check "
                "CXONE_AUTH_BASE_URL"
            )
        return body


def _connection_list(body: Any, call: _Call) -> list[Any]:
    """Connections from a listing: a JSON list, or an object holding one."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("connections", "items", "data"):
            if isinstance(body.get(key), list):
                listed: list[Any] = body[key]
                return listed
    raise CXoneProtocolError(
        f"{call.purpose}: {call.where} answered with JSON that is not a list of connections; "
        "check CXONE_API_BASE_URL and CXONE_CONNECTION_PATH"
    )


def _oauth_error_code(response: requests.Response) -> str | None:
    """The OAuth `error` code of a token endpoint refusal, when it is a plain identifier."""
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("error") if isinstance(body, dict) else None
    if isinstance(code, str) and _OAUTH_ERROR_CODE.match(code):
        return code
    return None

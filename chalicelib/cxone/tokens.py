"""The CXone access token: refreshed on a schedule into Secrets Manager, served from a cache.

`refresh_token` is the body of the scheduled `refresh_token` function: it keeps the token
secret holding a token with more than the refresh margin left. A failed refresh never deletes or
overwrites a token that is still valid; the outcome says whether one remains, so the caller can
log, count and raise only when none does.

`TokenProvider` is the one accessor the rest of the code uses: it reads the token secret once
and serves the cached token until it is close to expiry.

Secret formats: credentials `{"client_id", "client_secret"}` (access_key mode:
`{"access_key_id", "access_key_secret"}`, plus the app's `client_id`/`client_secret` when CXone
issued one); token `{"access_token", "token_type", "expires_at"}` with `expires_at` in RFC 3339.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import ClientError

from chalicelib.aws import AwsFailure, error_code
from chalicelib.config import Settings
from chalicelib.cxone.client import (
    AUTH_MODE_ACCESS_KEY,
    AccessKeyCredentials,
    AccessToken,
    ClientCredentials,
    CXoneClient,
    CXoneCredentials,
    CXoneSettings,
    load_cxone_settings,
)
from chalicelib.errors import ConfigurationError, DependencyUnavailable, RelayError
from chalicelib.formats import parse_rfc3339, rfc3339, utc_now
from chalicelib.runtime import Runtime
from chalicelib.telemetry import BatchMetrics, logger

RefreshStatus = Literal[
    "fresh", "refreshed", "failed_kept_valid", "failed_expired", "failed_unknown"
]
# The provider re-reads the secret this long before the cached token expires. Shorter than the
# refresh margin, so a scheduled refresh normally replaces the token before any reader needs it.
DEFAULT_PROVIDER_MARGIN_SECONDS = 300
# While the cached token is inside that margin, re-read at most this often: a failing refresh
# must not turn every caller into a Secrets Manager request.
DEFAULT_PROVIDER_REREAD_SECONDS = 30


class CredentialsError(ConfigurationError):
    """The CXone credentials secret is missing or malformed; names the secret, not its content."""


class TokenUnavailableError(DependencyUnavailable):
    """No valid CXone token is stored (the refresh schedule is failing); says where to look."""


@dataclass(frozen=True)
class RefreshOutcome:
    """What one `refresh_token` run did.

    status: "fresh" (stored token has more than the margin left; nothing done), "refreshed"
    (a new token is stored), "failed_kept_valid" (refresh failed; the stored token is still
    valid until `token_expires_at`), "failed_expired" (refresh failed and no valid token remains),
    "failed_unknown" (the token secret could not be read: it may still hold a valid token, so
    the schedule reports the failure and tries again on its next run instead of crashing).
    """

    status: RefreshStatus
    token_expires_at: datetime | None  # expiry of the token the secret holds now; None: none
    error_type: str | None = None  # class name of the failure
    error_message: str | None = None  # safe to log: never a secret or a token
    error: Exception | None = field(default=None, repr=False, compare=False)

    @property
    def failed(self) -> bool:
        return self.status.startswith("failed")

    @property
    def has_valid_token(self) -> bool:
        return self.status != "failed_expired"

    def log_fields(self) -> dict[str, Any]:
        """Structured log fields for the caller's log line."""
        return {
            "refresh_status": self.status,
            "token_expires_at": rfc3339(self.token_expires_at) if self.token_expires_at else None,
            "error_type": self.error_type,
            "error_message": self.error_message,
        }


# --------------------------------------------------------------------------- secret formats


def token_secret_string(token: AccessToken) -> str:
    return json.dumps(
        {
            "access_token": token.value,
            "token_type": token.token_type,
            "expires_at": rfc3339(token.expires_at),
        }
    )


def parse_token_secret(secret_string: str) -> AccessToken | None:
    """The stored token, or None when the secret does not hold a well-formed one."""
    try:
        body = json.loads(secret_string)
        value = body["access_token"]
        expires_at = parse_rfc3339(body["expires_at"])
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(value, str) or not value:
        return None
    token_type = body.get("token_type")
    return AccessToken(
        value=value,
        expires_at=expires_at,
        token_type=token_type if isinstance(token_type, str) and token_type else "Bearer",
    )


def parse_credentials(secret_string: str, auth_mode: str, secret_name: str) -> CXoneCredentials:
    """Credentials for `auth_mode`; errors name the secret and the missing keys, never values."""
    try:
        body = json.loads(secret_string)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise CredentialsError(
            f"the CXone credentials secret {secret_name} is not a JSON object; store it again "
            "with `python -m scripts.provision credentials`"
        )
    if auth_mode == AUTH_MODE_ACCESS_KEY:
        required = ("access_key_id", "access_key_secret")
    else:
        required = ("client_id", "client_secret")
    missing = [key for key in required if not isinstance(body.get(key), str) or not body[key]]
    if missing:
        raise CredentialsError(
            f"the CXone credentials secret {secret_name} lacks {', '.join(missing)} "
            f"(CXONE_AUTH_MODE is {auth_mode}); store it again with "
            "`python -m scripts.provision credentials`"
        )
    if auth_mode == AUTH_MODE_ACCESS_KEY:
        client_id = body.get("client_id")
        client_secret = body.get("client_secret")
        return AccessKeyCredentials(
            access_key_id=body["access_key_id"],
            access_key_secret=body["access_key_secret"],
            client_id=client_id if isinstance(client_id, str) and client_id else None,
            client_secret=client_secret if isinstance(client_secret, str) else None,
        )
    return ClientCredentials(client_id=body["client_id"], client_secret=body["client_secret"])


# --------------------------------------------------------------------------- Secrets Manager


def read_secret_string(secrets_client: Any, secret_name: str) -> str | None:
    """The secret's current string, or None when the secret (or a value) does not exist."""
    try:
        response = secrets_client.get_secret_value(SecretId=secret_name)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return None
        raise
    value: str | None = response.get("SecretString")
    return value


def read_stored_token(secrets_client: Any, secret_name: str) -> AccessToken | None:
    secret_string = read_secret_string(secrets_client, secret_name)
    if secret_string is None:
        return None
    token = parse_token_secret(secret_string)
    if token is None:
        logger.warning(
            "the CXone token secret does not hold a well-formed token; treating it as absent",
            extra={"secret_name": secret_name},
        )
    return token


def read_credentials(secrets_client: Any, secret_name: str, auth_mode: str) -> CXoneCredentials:
    try:
        secret_string = read_secret_string(secrets_client, secret_name)
    except ClientError as error:
        raise CredentialsError(
            f"cannot read the CXone credentials secret {secret_name} ({error_code(error)}); "
            "check the function's IAM policy allows secretsmanager:GetSecretValue on it"
        ) from None
    if secret_string is None:
        raise CredentialsError(
            f"the CXone credentials secret {secret_name} does not exist or has no value; store "
            "the credentials with `python -m scripts.provision credentials`"
        )
    return parse_credentials(secret_string, auth_mode, secret_name)


def store_token(secrets_client: Any, secret_name: str, token: AccessToken) -> None:
    """Write the token as the secret's new current version; create the secret if missing."""
    secret_string = token_secret_string(token)
    try:
        secrets_client.put_secret_value(SecretId=secret_name, SecretString=secret_string)
        return
    except ClientError as error:
        if error_code(error) != "ResourceNotFoundException":
            raise
    try:
        secrets_client.create_secret(
            Name=secret_name,
            SecretString=secret_string,
            Description="CXone access token, written by the refresh_token schedule",
        )
    except ClientError as error:
        # Another refresh created it between our two calls: write over it.
        if error_code(error) != "ResourceExistsException":
            raise
        secrets_client.put_secret_value(SecretId=secret_name, SecretString=secret_string)


# --------------------------------------------------------------------------- refresh


def needs_refresh(token: AccessToken | None, now: datetime, margin_seconds: float) -> bool:
    return token is None or token.seconds_left(now) <= margin_seconds


def refresh_token(
    secrets_client: Any,
    settings: Settings,
    cxone_settings: CXoneSettings,
    client: CXoneClient,
    now: datetime,
) -> RefreshOutcome:
    """Keep the token secret holding a token with more than the refresh margin left.

    Every failure becomes the outcome. When the token secret itself cannot be read (Secrets
    Manager down), nobody can say whether a valid token remains: "failed_unknown".
    """
    token_secret = settings.names.token_secret
    try:
        current = read_stored_token(secrets_client, token_secret)
    except AwsFailure as error:
        return RefreshOutcome(
            status="failed_unknown",
            token_expires_at=None,
            error_type=type(error).__name__,
            error_message=f"could not read the token secret {token_secret}; check Secrets "
            "Manager's availability and the function's permission to read it",
            error=error,
        )
    margin = cxone_settings.refresh_margin_seconds
    if current is not None and not needs_refresh(current, now, margin):
        logger.debug(
            "the stored CXone token is fresh; not refreshing",
            extra={"secret_name": token_secret, "token_expires_at": rfc3339(current.expires_at)},
        )
        return RefreshOutcome(status="fresh", token_expires_at=current.expires_at)
    try:
        credentials = read_credentials(
            secrets_client, settings.names.credentials_secret, cxone_settings.auth_mode
        )
        new_token = client.fetch_token(credentials)
        store_token(secrets_client, token_secret, new_token)
    except (RelayError, *AwsFailure) as error:  # CXone's, the credentials', AWS's
        kept = current if current is not None and current.is_valid_at(now) else None
        return RefreshOutcome(
            status="failed_kept_valid" if kept else "failed_expired",
            token_expires_at=kept.expires_at if kept else None,
            error_type=type(error).__name__,
            error_message=str(error),
            error=error,
        )
    logger.info(
        "stored a new CXone access token",
        extra={
            "secret_name": token_secret,
            "token_expires_at": rfc3339(new_token.expires_at),
            "previous_expires_at": rfc3339(current.expires_at) if current else None,
        },
    )
    return RefreshOutcome(status="refreshed", token_expires_at=new_token.expires_at)


# --------------------------------------------------------------------------- accessor


class TokenProvider:
    """The CXone bearer token for everyone else, from the token secret, cached in memory.

    The secret is read once and again only when the cached token comes within `margin_seconds`
    of expiry (then at most every `reread_seconds`), or after `invalidate()` (e.g. on a 401).
    """

    def __init__(
        self,
        secrets_client: Any,
        secret_name: str,
        margin_seconds: float = DEFAULT_PROVIDER_MARGIN_SECONDS,
        reread_seconds: float = DEFAULT_PROVIDER_REREAD_SECONDS,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._secrets_client = secrets_client
        self.secret_name = secret_name
        self._margin = timedelta(seconds=margin_seconds)
        self._reread = timedelta(seconds=reread_seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: AccessToken | None = None
        self._read_at: datetime | None = None

    def __repr__(self) -> str:
        return f"TokenProvider(secret_name={self.secret_name!r}, cached={self._cached!r})"

    def get(self, now: datetime | None = None) -> str:
        """The current token's value; raises TokenUnavailableError when none is valid."""
        return self.get_token(now).value

    def get_token(self, now: datetime | None = None) -> AccessToken:
        now = now or self._clock()
        with self._lock:
            if self._should_read(now):
                self._cached = read_stored_token(self._secrets_client, self.secret_name)
                self._read_at = now
            token = self._cached
        if token is None:
            raise TokenUnavailableError(
                f"no CXone token in secret {self.secret_name}: the refresh_token schedule has not "
                "stored one yet or cannot; check its logs and the CXone credentials secret"
            )
        if not token.is_valid_at(now):
            raise TokenUnavailableError(
                f"the CXone token in secret {self.secret_name} expired at "
                f"{rfc3339(token.expires_at)}: the refresh_token schedule is failing; check its "
                "logs and the CXone credentials secret"
            )
        return token

    def invalidate(self) -> None:
        """Forget the cached token; the next get() reads the secret."""
        with self._lock:
            self._cached = None
            self._read_at = None

    def _should_read(self, now: datetime) -> bool:
        if self._read_at is None:
            return True
        if self._cached is not None and self._cached.expires_at - now > self._margin:
            return False
        return now - self._read_at >= self._reread


class TokenRefreshFailed(DependencyUnavailable):
    """The scheduled refresh failed and no valid token remains: CXone calls will fail until a
    later run (the schedule is the retry) gets one."""


def scheduled_refresh(runtime: Runtime, now: datetime | None = None) -> RefreshOutcome:
    """The `refresh_token` schedule: refresh near expiry, keep a valid token on failure."""
    cxone_settings = load_cxone_settings()
    outcome = refresh_token(
        runtime.secretsmanager,
        runtime.settings,
        cxone_settings,
        CXoneClient(cxone_settings),
        now or utc_now(),
    )
    metrics = BatchMetrics()
    metrics.count("TokenRefreshFailed" if outcome.failed else "TokenRefreshOk")
    metrics.flush()
    if outcome.failed:
        logger.error("CXone token refresh failed", extra=outcome.log_fields())
        if not outcome.has_valid_token:
            raise TokenRefreshFailed(outcome.error_message or "token refresh failed")
    return outcome

"""The log guard (tests/log_guard.py) that keeps secrets out of every log line of the suite:
that it catches what it must, learns the secrets by itself, and watches the whole process.

Tests of the guard use a registry of their own (so the suite-wide guard does not flag their
deliberate leaks), except where they prove the suite-wide guard sees a record: there they take
the leak back from it before the test ends.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import Iterator

import boto3
import pytest
from aws_lambda_powertools import Logger

from chalicelib.cxone.client import ClientCredentials, CXoneClient, load_cxone_settings
from chalicelib.telemetry import logger as relay_logger
from scripts.local.cxone_standin import CXoneStandIn
from tests.support.log_guard import (
    MIN_SECRET_CHARS,
    REGISTRY,
    LogGuard,
    SecretLeak,
    SecretRegistry,
    active_guard,
    fingerprint,
    register_secret,
    watching,
)


def a_secret() -> str:
    return "s3cr3t-" + secrets.token_hex(16)


@pytest.fixture
def registry() -> SecretRegistry:
    return SecretRegistry()


@pytest.fixture
def quiet_logger() -> Iterator[logging.Logger]:
    """A logger that reaches only the handlers a test gives it (not the suite's guard)."""
    logger = logging.getLogger(f"guard-test-{uuid.uuid4().hex[:8]}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.handlers.clear()


def test_a_registered_secret_in_a_message_fails_the_check_without_showing_it(
    registry: SecretRegistry, quiet_logger: logging.Logger
) -> None:
    secret = a_secret()
    registry.register(secret)
    guard = LogGuard(registry)
    quiet_logger.addHandler(guard)

    quiet_logger.info("refreshed with %s", secret)

    with pytest.raises(SecretLeak) as raised:
        guard.check()
    report = str(raised.value)
    assert secret not in report
    assert quiet_logger.name in report and fingerprint(secret) in report and "message" in report
    guard.check()  # a leak is reported once


@pytest.mark.parametrize("where", ["fields", "exception", "debug"])
def test_a_secret_in_extra_fields_an_exception_or_at_debug_is_caught(
    registry: SecretRegistry, where: str
) -> None:
    """Powertools prints `extra` fields and the exception in its JSON line; DEBUG records of
    the project's loggers are emitted while the guard watches, even where production logs at
    INFO."""
    secret = a_secret()
    registry.register(secret)
    project_logger = logging.getLogger("chalicelib.guard_test")

    with watching(registry) as guard:
        if where == "fields":
            project_logger.warning("refresh failed", extra={"response": {"token": secret}})
        elif where == "exception":
            try:
                raise RuntimeError(f"bad credentials {secret}")
            except RuntimeError:
                project_logger.exception("refresh failed")
        else:
            project_logger.debug("token is %s", secret)

    leaks = guard.take_leaks()
    assert leaks and all(secret == leak.secret for leak in leaks)
    expected = {"fields": "fields", "exception": "exception", "debug": "message"}[where]
    assert expected in {leak.where for leak in leaks}
    assert secret not in repr(leaks)


def test_records_without_secrets_and_values_too_short_to_be_one_pass(
    registry: SecretRegistry,
) -> None:
    assert not registry.register("x" * (MIN_SECRET_CHARS - 1))
    assert not registry.register(None)  # type: ignore[arg-type]
    assert registry.register(a_secret())

    with watching(registry) as guard:
        logging.getLogger("chalicelib.guard_test").warning("xxxxxxxxxxx and an ordinary line")

    guard.check()
    assert guard.records_seen >= 1


def test_secrets_manager_values_are_registered_as_they_are_stored(boto_session) -> None:
    """Every SecretString sent to Secrets Manager (and its secret-looking JSON values)."""
    client = boto_session.client("secretsmanager")
    client_secret, token, pushed = a_secret(), a_secret(), a_secret()
    name = f"guard-test-{uuid.uuid4().hex[:8]}"
    client_id = f"client-id-{uuid.uuid4().hex[:8]}"

    client.create_secret(
        Name=name, SecretString=json.dumps({"client_id": client_id, "client_secret": client_secret})
    )
    client.put_secret_value(
        SecretId=name,
        SecretString=json.dumps({"access_token": token, "token_type": "Bearer"}),
    )
    client.create_secret(Name=f"{name}-push", SecretString=pushed)

    assert client_secret in REGISTRY and token in REGISTRY and pushed in REGISTRY
    assert client_id not in REGISTRY  # an identifier, not a secret: it may be logged


def test_cxone_tokens_and_the_stand_ins_credentials_are_registered() -> None:
    client_secret = a_secret()
    with CXoneStandIn("guard-client", client_secret, token_ttl_seconds=600) as stand_in:
        assert client_secret in REGISTRY
        settings = load_cxone_settings({"CXONE_AUTH_BASE_URL": stand_in.base_url})
        token = CXoneClient(settings).fetch_token(ClientCredentials("guard-client", client_secret))

    assert token.value in REGISTRY
    assert stand_in.issued_tokens() == [token.value]


def test_the_suite_wide_guard_sees_powertools_records_and_new_loggers() -> None:
    """Powertools adds a filter to every root handler that drops its own service's records;
    the guard ignores it, also for a Powertools logger created during the test."""
    secret = a_secret()
    assert register_secret(secret)
    guard = active_guard()
    Logger(service=f"guard-test-{uuid.uuid4().hex[:8]}")  # adds its filter to root handlers

    relay_logger.info("token refreshed", extra={"token": secret})

    leaks = guard.take_leaks()  # taken back: the deliberate leak must not fail this test
    assert [(leak.logger, leak.where) for leak in leaks] == [("cxone-relay", "fields")]


def test_the_suite_wide_guard_watches_this_very_test(boto_session) -> None:
    """No test is unguarded: the guard is on the root logger while a test runs."""
    guard = active_guard()
    assert guard in logging.getLogger().handlers
    assert logging.getLogger("cxone-relay").getEffectiveLevel() == logging.DEBUG
    before = guard.records_seen
    boto3.client("sts", region_name="us-east-1")  # botocore logs nothing at its level
    logging.getLogger("chalicelib.guard_test").debug("an ordinary debug line")
    assert guard.records_seen == before + 1

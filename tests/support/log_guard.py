"""Pytest plugin: no known secret value may appear in any log record, in any test of the suite.

Loaded by tests/conftest.py (`pytest_plugins`). For every test an autouse fixture puts a
handler on the root logger (and on any logger that does not propagate) and lowers the
project's own loggers to DEBUG, so every record the code under test emits is looked at: its
message, its `extra` fields (what the Powertools JSON line is built from) and its exception
text. A record holding a registered secret fails the test at teardown; the failure names the
logger, the level and where the value was found, never the value itself.

Secrets are registered
- by `register_secret(value)`, for values a test makes up or receives;
- automatically, for every `SecretString` a botocore client sends to Secrets Manager
  (CreateSecret, PutSecretValue, UpdateSecret) or reads from it (GetSecretValue): the whole
  string and, for a JSON object, the values of its secret-looking keys (`client_secret`,
  `access_token`, ...). Clients of every session and thread pass through
  `BaseClient._make_api_call`, which is wrapped for the whole run;
- automatically, for every CXone access token `CXoneClient.fetch_token` returns and every
  secret the CXone stand-in (scripts/cxone_standin.py) is started with.

Values shorter than MIN_SECRET_CHARS are not registered: no real secret is that short, and
short strings ("not json", "testing") turn up in ordinary log lines. The registry lasts for
the whole session, so a secret created by one test (or a module fixture) stays guarded in
every later one.

What is outside: botocore's own DEBUG wire logging (it prints request bodies by design and is
off in Lambda; its loggers are left at their level), text written straight to stdout (CLI
output meant for an operator), and processes other than pytest's (the e2e local stack).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.client import BaseClient

MIN_SECRET_CHARS = 12
# Keys of a JSON SecretString whose values are secrets in their own right.
SECRET_KEY_WORDS = ("secret", "password", "token", "private")
NOT_SECRET_KEYS = frozenset({"token_type", "token_endpoint"})
SECRET_WRITES = frozenset({"CreateSecret", "PutSecretValue", "UpdateSecret"})
# The project's loggers, lowered to DEBUG during each test so that nothing they could emit
# escapes the check (Powertools' "cxone-relay" and the standard "chalicelib"/"scripts" ones).
WATCHED_LOGGERS = ("cxone-relay", "chalicelib", "scripts", "cxone_standin")


class SecretLeak(AssertionError):
    """A registered secret value was found in a log record."""


def fingerprint(secret: str) -> str:
    """How a leak report names a secret: a short hash and the length, never the value."""
    return f"sha256:{hashlib.sha256(secret.encode()).hexdigest()[:12]} ({len(secret)} chars)"


class SecretRegistry:
    """The secret values of the session; thread-safe."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def register(self, value: object) -> bool:
        """Guard `value` from now on; False when it is not a string long enough to be one."""
        if not isinstance(value, str) or len(value) < MIN_SECRET_CHARS:
            return False
        with self._lock:
            self._values.add(value)
        return True

    def register_secret_string(self, secret_string: object) -> None:
        """A Secrets Manager SecretString: the whole string, and a JSON object's secret values."""
        if not isinstance(secret_string, str):
            return
        self.register(secret_string)
        try:
            document = json.loads(secret_string)
        except ValueError:
            return
        if not isinstance(document, dict):
            return
        for key, value in document.items():
            lowered = str(key).lower()
            if lowered in NOT_SECRET_KEYS:
                continue
            if any(word in lowered for word in SECRET_KEY_WORDS):
                self.register(value)

    def __contains__(self, value: object) -> bool:
        with self._lock:
            return value in self._values

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def found_in(self, text: str) -> list[str]:
        with self._lock:
            values = list(self._values)
        return [value for value in values if value in text]


@dataclass(frozen=True)
class Leak:
    logger: str
    level: str
    where: str  # "message", "fields" or "exception"
    secret: str = ""  # kept out of repr and reports

    def __repr__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        return (
            f"{self.level} record of logger {self.logger!r} holds secret "
            f"{fingerprint(self.secret)} in its {self.where}"
        )


_FORMATTER = logging.Formatter()


def record_texts(record: logging.LogRecord) -> dict[str, str]:
    """Everything of a record that can end up in a log line, by where it comes from."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string still logs its parts
        message = f"{record.msg!r} {record.args!r}"
    texts = {
        "message": message,
        # The record's attributes are what a structured formatter (Powertools) serialises:
        # `extra` fields included.
        "fields": json.dumps(vars(record), default=repr, ensure_ascii=False),
    }
    if record.exc_info and record.exc_info[1] is not None:
        texts["exception"] = _FORMATTER.formatException(record.exc_info)
    if record.stack_info:
        texts["exception"] = texts.get("exception", "") + record.stack_info
    return texts


class LogGuard(logging.Handler):
    """A handler that notes every record holding a registered secret."""

    def __init__(self, registry: SecretRegistry) -> None:
        super().__init__(level=logging.NOTSET)
        self.registry = registry
        self.records_seen = 0
        self._leaks: list[Leak] = []

    # Powertools adds a filter to every root handler that drops its own records (so that they
    # are not printed twice); this handler must see them.
    def addFilter(self, filter: Any) -> None:
        return None

    def filter(self, record: logging.LogRecord) -> bool:
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.records_seen += 1
        if not len(self.registry):
            return
        for where, text in record_texts(record).items():
            for secret in self.registry.found_in(text):
                self._leaks.append(Leak(record.name, record.levelname, where, secret))

    def take_leaks(self) -> list[Leak]:
        """The leaks noted so far, forgotten by the guard."""
        self.acquire()
        try:
            leaks, self._leaks = self._leaks, []
        finally:
            self.release()
        return leaks

    def check(self) -> None:
        """Raise SecretLeak (naming loggers and fingerprints, not values) if any was noted."""
        leaks = self.take_leaks()
        if leaks:
            unique = list(dict.fromkeys(leak.describe() for leak in leaks))
            raise SecretLeak("secret values in log records:\n  " + "\n  ".join(unique))


REGISTRY = SecretRegistry()
_active: LogGuard | None = None


def register_secret(value: str) -> bool:
    """Treat `value` as a secret for the rest of the session (see module docstring)."""
    return REGISTRY.register(value)


def active_guard() -> LogGuard:
    """The guard watching the running test."""
    if _active is None:
        raise RuntimeError("no log guard is active (outside a test?)")
    return _active


# --------------------------------------------------------------------------- auto-registration


_original_make_api_call = BaseClient._make_api_call


def _make_api_call_registering_secrets(
    self: BaseClient, operation_name: str, api_params: dict[str, Any]
) -> Any:
    is_secrets_manager = self.meta.service_model.service_name == "secretsmanager"
    if is_secrets_manager and operation_name in SECRET_WRITES:
        REGISTRY.register_secret_string(api_params.get("SecretString"))
    result = _original_make_api_call(self, operation_name, api_params)
    if is_secrets_manager and operation_name == "GetSecretValue" and isinstance(result, dict):
        REGISTRY.register_secret_string(result.get("SecretString"))
    return result


def pytest_configure(config: pytest.Config) -> None:
    # Every botocore client, whatever its session or thread, calls through here; an event
    # handler would have to be registered on each session's own event system.
    BaseClient._make_api_call = _make_api_call_registering_secrets  # type: ignore[method-assign]


def pytest_unconfigure(config: pytest.Config) -> None:
    BaseClient._make_api_call = _original_make_api_call  # type: ignore[method-assign]


def _registering_result(
    method: Callable[..., Any], value_of: Callable[[Any], object]
) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        REGISTRY.register(value_of(result))
        return result

    return wrapper


def _registering_secret_arguments(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap an __init__ so that its arguments named like a secret are registered."""
    signature = inspect.signature(init)
    names = [name for name in signature.parameters if "secret" in name]

    def wrapper(*args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs)
        for name in names:
            REGISTRY.register(bound.arguments.get(name))
        init(*args, **kwargs)

    return wrapper


@pytest.fixture(scope="session", autouse=True)
def _register_project_secrets() -> Iterator[None]:
    """CXone tokens as the client obtains them, and the credentials the stand-in checks."""
    from chalicelib.cxone.client import CXoneClient
    from scripts.local.cxone_standin import CXoneStandIn

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            CXoneClient,
            "fetch_token",
            _registering_result(CXoneClient.fetch_token, lambda token: token.value),
        )
        patch.setattr(
            CXoneStandIn, "__init__", _registering_secret_arguments(CXoneStandIn.__init__)
        )
        yield


# --------------------------------------------------------------------------- the guard


def _non_propagating_loggers() -> list[logging.Logger]:
    """Loggers whose records never reach the root logger: the guard goes on them too."""
    return [
        logger
        for logger in list(logging.Logger.manager.loggerDict.values())
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]


@contextmanager
def watching(registry: SecretRegistry = REGISTRY) -> Iterator[LogGuard]:
    """A guard on every log record emitted inside the block (the project's loggers at DEBUG);
    call `check()` on it afterwards."""
    guard = LogGuard(registry)
    targets = [logging.getLogger(), *_non_propagating_loggers()]
    for logger in targets:
        logger.addHandler(guard)
    levels = {}
    for name in WATCHED_LOGGERS:
        logger = logging.getLogger(name)
        levels[name] = logger.level
        if logger.getEffectiveLevel() > logging.DEBUG:
            logger.setLevel(logging.DEBUG)
    try:
        yield guard
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for logger in targets:
            logger.removeHandler(guard)


@pytest.fixture(autouse=True)
def _log_guard() -> Iterator[LogGuard]:
    """Watch every log record of the test; fail it if one holds a registered secret."""
    global _active
    with watching() as guard:
        _active = guard
        try:
            yield guard
        finally:
            _active = None
    try:
        guard.check()
    except SecretLeak as leak:
        pytest.fail(str(leak), pytrace=False)

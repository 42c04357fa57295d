"""Every error the relay raises on purpose is in the family that says what to do about it.

Callers catch families, not classes: the API's boundary turns a BadRequest into a 400 and a
DependencyUnavailable into a 503, the refresh schedule folds every RelayError into its outcome,
and an operator's script may write `except DependencyUnavailable` around a CXone call. A class
re-parented into the wrong family (or none) changes what users see; these tests say so.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from chalice.app import BadRequestError, NotFoundError, Response

from chalicelib.api.cursors import CursorError, CursorKeyUnavailable
from chalicelib.api.params import ParameterError
from chalicelib.api.routes import answered
from chalicelib.config import ConfigError
from chalicelib.cxone.client import (
    CXoneAuthError,
    CXoneError,
    CXonePermissionError,
    CXoneProtocolError,
    CXoneRateLimitError,
    CXoneRequestError,
    CXoneUnavailableError,
)
from chalicelib.cxone.tokens import CredentialsError, TokenRefreshFailed, TokenUnavailableError
from chalicelib.errors import (
    BadRequest,
    ConfigurationError,
    DependencyUnavailable,
    NotFound,
    Poison,
    RelayError,
)
from chalicelib.push.handler import BadBatch, SecretUnavailable
from chalicelib.replay.jobs import JobBusy

FAMILIES: tuple[type[RelayError], ...] = (
    BadRequest,
    NotFound,
    DependencyUnavailable,
    Poison,
    ConfigurationError,
)

# (an instance as its raiser builds it, the one family it belongs to)
ERRORS: list[tuple[RelayError, type[RelayError]]] = [
    (ParameterError({"limit": ["must be a whole number"]}), BadRequest),
    (CursorError("has expired"), BadRequest),
    (BadBatch({"events": ["is missing"]}), BadRequest),
    (CXoneRequestError("CXone refused the request", status=409), BadRequest),
    (CursorKeyUnavailable("the cursor signing key cannot be read"), DependencyUnavailable),
    (SecretUnavailable("the signing secret cannot be read"), DependencyUnavailable),
    (JobBusy("another worker holds the lease"), DependencyUnavailable),
    (CXoneRateLimitError("429 after the retries", retry_after_seconds=30), DependencyUnavailable),
    (CXoneUnavailableError("503 after 4 attempts", status=503), DependencyUnavailable),
    (CXoneProtocolError("not JSON", status=200), DependencyUnavailable),
    (TokenUnavailableError("no CXone token in secret t"), DependencyUnavailable),
    (TokenRefreshFailed("refresh failed; no valid token remains"), DependencyUnavailable),
    (CXoneAuthError("check CXONE_CLIENT_ID", status=401), ConfigurationError),
    (CXonePermissionError("check the scope", status=403), ConfigurationError),
    (CredentialsError("the CXone credentials secret c lacks client_id"), ConfigurationError),
    (ConfigError("CONSUMERS must name at least one consumer"), ConfigurationError),
]


def _name(error: object) -> str:
    return type(error).__name__


@pytest.mark.parametrize(("error", "family"), ERRORS, ids=[_name(e) for e, _ in ERRORS])
def test_each_error_is_caught_by_its_family_alone(
    error: RelayError, family: type[RelayError]
) -> None:
    with pytest.raises(family):
        raise error
    assert [f for f in FAMILIES if isinstance(error, f)] == [family]
    assert error.__doc__, f"{_name(error)} says in one docstring what it means"


CXONE_ERRORS = [error for error, _ in ERRORS if isinstance(error, CXoneError)]


@pytest.mark.parametrize("error", CXONE_ERRORS, ids=_name)
def test_cxone_errors_stay_cxone_errors_and_keep_their_message(error: CXoneError) -> None:
    # Provisioning prints CXoneError messages as they are; the family must not reword them.
    with pytest.raises(CXoneError) as caught:
        raise error
    assert str(caught.value) == error.args[0]
    assert "cxone:" not in str(caught.value)


def test_a_cxone_request_error_keeps_its_status_and_names_the_call_in_errors() -> None:
    error = CXoneRequestError("CXone refused the connection (409 Conflict)", status=409)
    assert error.status == 409
    assert error.errors == {"cxone": ["CXone refused the connection (409 Conflict)"]}
    assert CXoneRateLimitError("429", retry_after_seconds=30.0).status == 429


@pytest.mark.parametrize(
    "error",
    [ParameterError({"since": ["is required"]}), CXoneAuthError("401"), CredentialsError("x")],
    ids=_name,
)
def test_callers_that_catch_value_error_still_catch_what_they_caught(error: Exception) -> None:
    with pytest.raises(ValueError):
        raise error


def test_a_bad_request_names_each_problem_once_per_field_and_problem() -> None:
    error = ParameterError({"since": ["is required", "must be RFC 3339"], "limit": ["is 0"]})
    assert str(error) == "since: is required; since: must be RFC 3339; limit: is 0"
    assert error.errors == {"since": ["is required", "must be RFC 3339"], "limit": ["is 0"]}
    assert str(CursorError("was issued for other filters")) == (
        "cursor: was issued for other filters"
    )


def _raising(error: Exception) -> Callable[[], object]:
    @answered
    def route() -> object:
        raise error

    return route


def test_the_api_boundary_answers_a_bad_request_with_400_and_its_text() -> None:
    with pytest.raises(BadRequestError) as caught:
        _raising(ParameterError({"limit": ["must be a whole number from 1 to 1000"]}))()
    assert str(caught.value) == "limit: must be a whole number from 1 to 1000"
    assert caught.value.STATUS_CODE == 400


def test_the_api_boundary_answers_not_found_with_404() -> None:
    with pytest.raises(NotFoundError) as caught:
        _raising(NotFound("job_id: no replay job 'abc'"))()
    assert str(caught.value) == "job_id: no replay job 'abc'"
    assert caught.value.STATUS_CODE == 404


def test_the_api_boundary_answers_an_unavailable_dependency_with_503_and_retry_after() -> None:
    response = _raising(CursorKeyUnavailable("the cursor signing key cannot be read"))()
    assert isinstance(response, Response)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.body == {
        "Code": "ServiceUnavailable",
        "Message": "the cursor signing key cannot be read",
    }


def test_the_api_boundary_lets_a_bug_through_as_a_bug() -> None:
    with pytest.raises(KeyError):
        _raising(KeyError("not a RelayError"))()

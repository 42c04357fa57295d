"""The one root of every error this project raises on purpose, and its three families.

Each entry point (the ingest handler, the API routes, the push route, the replay worker, the
token refresher) translates these at one boundary: a `BadRequest` becomes a 400, a
`DependencyUnavailable` a retried record or a 503, a `Poison` record a quarantine message.
Anything else that escapes is a bug, and is reported as one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

PoisonReason = Literal["unparseable", "invalid", "too_large"]


class RelayError(Exception):
    """Root of every error the relay raises on purpose."""


class ConfigurationError(RelayError, ValueError):
    """A setting is missing or malformed: the function fails at cold start, naming it."""


class BadRequest(RelayError, ValueError):
    """The caller sent something the relay will not act on: a 400 listing the reasons."""

    def __init__(self, errors: Mapping[str, list[str]], message: str | None = None) -> None:
        # `errors` maps each field to what is wrong with it; the message (the 400's text) says
        # "<field>: <what is wrong>" once per problem, unless the raiser words it itself.
        self.errors = {field: list(messages) for field, messages in errors.items()}
        super().__init__(
            message
            if message is not None
            else "; ".join(
                f"{field}: {problem}"
                for field, problems in self.errors.items()
                for problem in problems
            )
        )


class NotFound(RelayError):
    """The named thing does not exist (or its name cannot be one): a 404."""


class DependencyUnavailable(RelayError):
    """An AWS service or the CXone API failed in a way a retry may fix: the record is retried
    with a backoff, the API answers 503; never swallowed."""


class Poison(RelayError):
    """Input that can never succeed, whatever the retries: quarantined with its reason, for
    that record alone, never failing its batch."""

    def __init__(self, reason: PoisonReason, errors: Mapping[str, list[str]]) -> None:
        self.reason: PoisonReason = reason
        self.errors = {field: list(messages) for field, messages in errors.items()}
        super().__init__(f"{reason}: {self.errors}")

"""Provider profiles: which schema validates an event, and how it maps to a CanonicalEvent.

A profile is picked by the envelope's `source`. Adding a provider means one new module in this
package with `matches_source`, `describe_sources`, `to_canonical` and `key_fields`, and one
line in PROFILES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib.config import Settings
from chalicelib.model import CanonicalEvent, InvalidEvent
from chalicelib.providers import connect, cxone, genesys


@dataclass(frozen=True)
class Profile:
    name: str
    # Whether events from this `source` belong to the profile (under these settings).
    matches_source: Callable[[str, Settings], bool]
    # The accepted sources in words, for the "unknown source" message; None when disabled.
    describe_sources: Callable[[Settings], str | None]
    # Validate an envelope already known to be a JSON object and map it.
    to_canonical: Callable[[dict[str, Any], Settings], CanonicalEvent | InvalidEvent]
    # The fields of a valid event its (interaction id, dedup key) come from, to name them
    # when a key is too long for DynamoDB (validation.key_limit_errors).
    key_fields: Callable[[dict[str, Any]], tuple[str, str]]


# Checked in order: the first profile whose `matches_source` is true wins.
PROFILES: tuple[Profile, ...] = (
    Profile(
        "cxone", cxone.matches_source, cxone.describe_sources, cxone.to_canonical, cxone.key_fields
    ),
    Profile(
        "genesys",
        genesys.matches_source,
        genesys.describe_sources,
        genesys.to_canonical,
        genesys.key_fields,
    ),
    Profile(
        "connect",
        connect.matches_source,
        connect.describe_sources,
        connect.to_canonical,
        connect.key_fields,
    ),
)


def profile_for(source: str, settings: Settings) -> Profile | None:
    for profile in PROFILES:
        if profile.matches_source(source, settings):
            return profile
    return None


def accepted_sources(settings: Settings) -> list[str]:
    """The sources these settings accept, described in words for an error message."""
    described = (profile.describe_sources(settings) for profile in PROFILES)
    return [description for description in described if description is not None]

"""Provisioning step `cxone-connection`: the CXone connection that sends events to our bus.

Finds the connection by name first, so re-running changes nothing; creates it otherwise (or
reports "would create" on a dry run, which only reads). The request body follows the integration
guide's connection API (see `chalicelib.cxone.client`); its path is CXONE_CONNECTION_PATH.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.config import CXONE_DETAIL_TYPES, DEFAULT_EVENT_SOURCE, Settings
from chalicelib.cxone.client import AccessToken, CXoneClient, CXoneProtocolError
from scripts.provisioning.actions import Action

ACTION_KIND = "cxone-connection"


@dataclass(frozen=True)
class ConnectionSpec:
    """What the connection must be: where CXone sends which events."""

    name: str
    event_bus_name: str
    aws_account_id: str
    aws_region: str
    event_types: tuple[str, ...] = CXONE_DETAIL_TYPES
    event_source: str = DEFAULT_EVENT_SOURCE

    def request_body(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "awsAccountId": self.aws_account_id,
            "awsRegion": self.aws_region,
            "eventBusName": self.event_bus_name,
            "eventSource": self.event_source,
            "enabled": True,
            "eventTypes": list(self.event_types),
        }

    @classmethod
    def for_stage(cls, settings: Settings, account_id: str) -> ConnectionSpec:
        """The stage's connection: named after the stage, to its bus, for its event source."""
        return cls(
            name=f"{settings.prefix}-eventbridge",
            event_bus_name=settings.names.event_bus,
            aws_account_id=account_id,
            aws_region=settings.region,
            event_source=settings.event_source,
        )


def differences(existing: dict[str, Any], spec: ConnectionSpec) -> list[str]:
    """Fields where an existing connection differs from the spec, described for a person."""
    wanted = spec.request_body()
    found: list[str] = []
    for key in ("awsAccountId", "awsRegion", "eventBusName", "eventSource", "enabled"):
        if key in existing and existing[key] != wanted[key]:
            found.append(f"{key} is {existing[key]!r}, wanted {wanted[key]!r}")
    if "eventTypes" in existing and sorted(existing["eventTypes"] or []) != sorted(
        wanted["eventTypes"]
    ):
        found.append(f"eventTypes is {existing['eventTypes']!r}, wanted {wanted['eventTypes']!r}")
    return found


def ensure_cxone_connection(
    client: CXoneClient, token: AccessToken | str, spec: ConnectionSpec, dry_run: bool
) -> Action:
    """The connection exists (status "present"), is created ("created"), or would be."""
    existing = client.find_connection(token, spec.name)
    if existing is not None:
        drift = differences(existing, spec)
        detail = f"id {existing.get('id', '?')}"
        if drift:
            # The integration guide documents no update call: say what differs and let a person
            # decide (edit it in CXone, or delete it there and re-run).
            detail += "; differs from the spec: " + "; ".join(drift)
        return Action(ACTION_KIND, spec.name, "present", detail)
    target = f"bus {spec.event_bus_name} in {spec.aws_account_id}/{spec.aws_region}"
    if dry_run:
        return Action(ACTION_KIND, spec.name, "would create", target)
    created = client.create_connection(token, spec.request_body())
    connection_id = created.get("id")
    if not connection_id:
        raise CXoneProtocolError(
            "connection creation: CXone answered without an id; check CXONE_API_BASE_URL and "
            "CXONE_CONNECTION_PATH, then re-run (an existing connection is found by name)"
        )
    return Action(ACTION_KIND, spec.name, "created", f"id {connection_id}; {target}")

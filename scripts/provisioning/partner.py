"""Provisioning step `partner-source`: associate a SaaS partner event source with its bus.

A partner (Genesys Cloud, for one) creates the event source in our account; events sent to it
are dropped until a bus *of the same name* is associated with it
(`create_event_bus(Name=source, EventSourceName=source)`). Until then the source is PENDING and
expires at its `ExpirationTime`; once associated it is ACTIVE. The step reads both back, so what
it reports is what EventBridge says, not what we asked for.

Partner events arrive on the partner bus, not on the stage's own bus, so the step also routes
that bus to the ingest queue with `partner_rule` (the same spec `scripts.packaging.template`
renders).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.aws import error_code
from chalicelib.config import Settings
from chalicelib.formats import rfc3339
from chalicelib.stack import RuleSpec
from scripts.provisioning.actions import Action

PARTNER_SOURCE_PREFIX = "aws.partner/"


class PartnerSourceError(RuntimeError):
    """The partner event source cannot be associated; the message says what to do."""


def check_source_name(source_name: str) -> str:
    if not source_name.startswith(PARTNER_SOURCE_PREFIX):
        raise PartnerSourceError(
            f"{source_name!r} is not a partner event source name: those start with "
            f"{PARTNER_SOURCE_PREFIX!r} (e.g. aws.partner/genesys.com/cloud/<org id>/<name>); "
            "copy it from the EventBridge console's 'Partner event sources' page"
        )
    return source_name


def partner_rule(settings: Settings, source_name: str) -> RuleSpec:
    """Everything on the partner bus goes to the ingest queue; the profile sorts it out."""
    names = settings.names
    return RuleSpec(
        name=f"{names.ingest_rule}-partner",  # rule names are per bus: no clash across buses
        pattern={"source": [source_name]},
        target_id="ingest-queue",
        target_queue=names.ingest_queue,
        target_dlq=names.ingest_dlq,
    )


def describe_source(events: Any, source_name: str) -> dict[str, Any]:
    try:
        return events.describe_event_source(Name=source_name)
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            raise PartnerSourceError(
                f"the partner event source {source_name} does not exist in this account and "
                "region: create it from the partner's side first (Genesys Cloud: the Amazon "
                "EventBridge Source integration, with this AWS account id and region), then "
                "re-run this step"
            ) from None
        raise


def _bus_exists(events: Any, name: str) -> bool:
    try:
        events.describe_event_bus(Name=name)
        return True
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return False
        raise


def describe_state(source: dict[str, Any]) -> str:
    """'ACTIVE', or 'PENDING, expires …' — what a person needs to know about the source."""
    state = str(source.get("State", "UNKNOWN"))
    expires = source.get("ExpirationTime")
    if state == "PENDING" and isinstance(expires, datetime):
        return f"{state}, expires {rfc3339(expires)} unless a bus is associated"
    return state


def ensure_partner_source(events: Any, source_name: str, dry_run: bool) -> list[Action]:
    """The partner bus exists and is associated with the source; reads the state back."""
    check_source_name(source_name)
    source = describe_source(events, source_name)
    if source.get("State") == "DELETED":
        raise PartnerSourceError(
            f"the partner event source {source_name} was deleted by the partner; set the "
            "integration up again on the partner's side, then re-run this step"
        )
    if _bus_exists(events, source_name):
        bus_status = "present"
    elif dry_run:
        bus_status = "would create"
    else:
        try:
            events.create_event_bus(Name=source_name, EventSourceName=source_name)
        except ClientError as error:
            # Another run created it between our read and this call: that is the goal too.
            if error_code(error) != "ResourceAlreadyExistsException":
                raise
        bus_status = "created"
        source = describe_source(events, source_name)  # read the association back
    actions = [Action("partner-bus", source_name, bus_status, "bus of the same name")]
    state = describe_state(source)
    if not dry_run and source.get("State") != "ACTIVE":
        # EventBridge activates the source as the bus is created; anything else means the
        # partner side still has to act (or the association did not take).
        state += "; events are dropped until it is ACTIVE (check the partner's integration)"
    actions.append(Action("partner-source", source_name, "present", state))
    return actions

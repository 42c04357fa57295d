"""Amazon Connect's route, provisioned on the moto server: a rule on the DEFAULT bus for
`aws.connect` contact events, targeting the ingest queue, admitted by a queue-policy statement
of its own. moto routes default-bus rules to SQS like any other bus (checked here by PutEvents),
but does not enforce queue policies, so the policy is read back instead.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from chalicelib.config import CONNECT_DETAIL_TYPE, CONNECT_SOURCE, load_settings
from chalicelib.stack import stack_spec
from scripts.provisioning.infra import Clients, provision_infrastructure
from tests.support.helpers import drain_queue

CONNECT_EVENT_DETAIL = {
    "contactId": "5ca1ab1e-0000-4000-8000-000000000001",
    "channel": "VOICE",
    "eventType": "INITIATED",
    "initiationMethod": "INBOUND",
    "initiationTimestamp": "2026-11-29T09:00:00.000Z",
}


def connect_rule_name(settings: Any) -> str:
    return f"{settings.names.ingest_rule}-connect"


def test_dry_run_plans_the_connect_rule_on_the_default_bus(
    relay_env: dict, boto_session: boto3.Session
) -> None:
    settings = load_settings()

    planned = provision_infrastructure(
        Clients.from_session(boto_session), stack_spec(settings), dry_run=True
    )

    rules = {a.name: a.status for a in planned if a.kind == "rule"}
    assert rules[connect_rule_name(settings)] == "would create"
    events = boto_session.client("events")
    listed = events.list_rules(EventBusName="default", NamePrefix=connect_rule_name(settings))
    assert listed["Rules"] == []


def test_connect_events_on_the_default_bus_reach_the_ingest_queue(
    relay_env: dict, boto_session: boto3.Session
) -> None:
    settings = load_settings()
    clients = Clients.from_session(boto_session)
    provision_infrastructure(clients, stack_spec(settings), dry_run=False)
    events, sqs = clients.events, clients.sqs

    rule = events.describe_rule(Name=connect_rule_name(settings), EventBusName="default")
    assert json.loads(rule["EventPattern"]) == {
        "source": [CONNECT_SOURCE],
        "detail-type": [CONNECT_DETAIL_TYPE],
    }
    queue_url = sqs.get_queue_url(QueueName=settings.names.ingest_queue)["QueueUrl"]
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["Policy"])["Attributes"][
            "Policy"
        ]
    )
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert statements["AllowAmazonConnectRule"]["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        rule["Arn"]
    ]
    assert (
        rule["Arn"] not in statements["AllowRelayRules"]["Condition"]["ArnEquals"]["aws:SourceArn"]
    )

    put = events.put_events(
        Entries=[
            {
                "Source": CONNECT_SOURCE,
                "DetailType": CONNECT_DETAIL_TYPE,
                "Detail": json.dumps(CONNECT_EVENT_DETAIL),
                "EventBusName": "default",
            },
            # Another detail-type of Amazon Connect is not this profile's: the rule skips it.
            {
                "Source": CONNECT_SOURCE,
                "DetailType": "Amazon Connect Agent Event",
                "Detail": json.dumps({"agentArn": "arn:aws:connect:::agent/1"}),
                "EventBusName": "default",
            },
        ]
    )
    assert put["FailedEntryCount"] == 0

    bodies = [json.loads(m["Body"]) for m in drain_queue(sqs, queue_url)]
    assert [(b["source"], b["detail-type"]) for b in bodies] == [
        (CONNECT_SOURCE, CONNECT_DETAIL_TYPE)
    ]
    assert bodies[0]["detail"] == CONNECT_EVENT_DETAIL
    # Provisioning again changes nothing: the statement is recognised as present.
    again = provision_infrastructure(clients, stack_spec(settings), dry_run=False)
    assert {a.status for a in again} == {"present"}, [a for a in again if a.status != "present"]


def test_connect_can_be_turned_off(relay_env: dict) -> None:
    settings = load_settings({**relay_env, "RELAY_CONNECT_ENABLED": "false"})

    assert connect_rule_name(settings) not in {r.name for r in stack_spec(settings).rules}

"""This project's ingest pipeline, invoked exactly as the Lambda wiring in app.py invokes it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import boto3

from chalicelib.config import Settings
from chalicelib.ingest.handler import handle_ingest
from chalicelib.runtime import Runtime, build_runtime
from chalicelib.stack import stack_spec
from scripts.provisioning.infra import Clients, provision_infrastructure


def provision(session: boto3.Session, settings: Settings) -> None:
    """The stage's whole infrastructure, by the same code `scripts.provision` runs."""
    provision_infrastructure(Clients.from_session(session), stack_spec(settings), dry_run=False)


class Ours:
    name = "ours"

    def __init__(self, settings: Settings, hook: Callable[[boto3.Session], None]) -> None:
        self.runtime: Runtime = build_runtime(settings)
        # Before any client exists: clients copy the session's event hooks when created.
        hook(self.runtime.session)
        # Created now, as the baselines create theirs in their constructors: client creation
        # is a cold-start cost, not a per-batch one.
        for client in ("sqs", "sns", "dynamodb"):
            self.runtime.client(client)

    def tables(self) -> list[str]:
        names = self.runtime.settings.names
        return [names.ledger_table, names.events_table, names.time_index_table]

    def consumer_topic_arns(self) -> list[str]:
        return list(self.runtime.consumer_topics.values())

    def close(self) -> None:
        self.runtime.executor.shutdown(wait=True)

    def handle(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        return handle_ingest(dict(event), context, self.runtime)

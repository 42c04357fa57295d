"""Provision a stage: `python -m scripts.provision [STEP] --stage dev [--dry-run]`.

Steps:
  infra                 queues, topics, tables, bus, rules, targets, queue policy (the default)
  partner-source        associate a SaaS partner event source (--source) with a bus of the
                        same name and route that bus to the ingest queue
  event-source-mapping  after `chalice deploy`: ReportBatchItemFailures on the ingest mapping
  credentials           CXone client credentials (stdin or prompt) and the push signing secret
  cxone-connection      the CXone connection that sends events to the stage's bus
  rotate-push-secret    a new push signing key (AWSCURRENT); the old one (AWSPREVIOUS) stays
                        accepted for RELAY_PUSH_SECRET_OVERLAP_SECONDS (default 24 h)
  all                   infra, credentials, event-source-mapping, cxone-connection, in that
                        order, stopping before event-source-mapping until `chalice deploy` ran

The stage's settings are its `.chalice/config.json` environment (what its functions see), so
a consumer added to CONSUMERS there gets its topic here as in `make package`. On real AWS the
order is: `infra`, `credentials`, then `chalice deploy` (Chalice builds the ingest queue's ARN
from its name, so the queue must exist first), then `event-source-mapping` and
`cxone-connection`; `all` follows it and stops, naming the deploy, where the deploy is
missing. Every step is idempotent: a re-run reports "present" and changes nothing;
`--dry-run` only reads. Credentials are never taken from the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chalicelib.aws import error_code
from chalicelib.config import ConfigError, Settings, load_settings
from chalicelib.cxone.client import CXoneClient, CXoneError, load_cxone_settings
from chalicelib.cxone.tokens import (
    CredentialsError,
    TokenProvider,
    TokenUnavailableError,
    read_credentials,
    refresh_token,
)
from chalicelib.formats import utc_now
from chalicelib.stack import stack_spec
from scripts.local.target import use_local_stack
from scripts.packaging.template import PackageError, stage_environment
from scripts.provisioning.actions import Action
from scripts.provisioning.credentials import (
    CredentialsInputError,
    SecretStateError,
    ensure_credentials_secret,
    ensure_push_secret,
    read_credentials_input,
    rotate_push_secret,
)
from scripts.provisioning.cxone_connection import ConnectionSpec, ensure_cxone_connection
from scripts.provisioning.infra import Clients, ensure_rule, provision_stack
from scripts.provisioning.mapping import (
    MappingError,
    ensure_report_batch_item_failures,
    function_exists,
    ingest_function_name,
)
from scripts.provisioning.partner import (
    PartnerSourceError,
    ensure_partner_source,
    partner_rule,
)

PROJECT_DIR = Path(__file__).resolve().parents[2]
# The status of the step `all` stops at: it needs something done by hand first.
WAITING = "waiting"
StepFunction = Callable[[Settings, argparse.Namespace], list[Action]]
ALL_ORDER = "infra -> credentials -> (chalice deploy) -> event-source-mapping -> cxone-connection"
# Failures a person can act on: printed as one line, without a traceback.
STEP_ERRORS = (
    ConfigError,
    CredentialsError,
    CredentialsInputError,
    CXoneError,
    MappingError,
    PartnerSourceError,
    SecretStateError,
    TokenUnavailableError,
    ClientError,
    BotoCoreError,
)


def stage_env(stage: str | None, project_dir: Path) -> dict[str, str]:
    """The process environment, with the stage's `.chalice/config.json` variables on top for
    a stage defined there: provisioning names what the deployed functions will use."""
    env = dict(os.environ)
    if stage:
        env["RELAY_STAGE"] = stage
    name = env.get("RELAY_STAGE") or "dev"
    # A stage of the user's own is configured by the environment alone.
    with contextlib.suppress(PackageError):
        env.update(stage_environment(project_dir, name))
    env["RELAY_STAGE"] = name
    return env


def aws_client(settings: Settings, args: argparse.Namespace, service: str) -> Any:
    # endpoint_url=None lets boto3 apply AWS_ENDPOINT_URL itself (moto locally).
    session = boto3.Session(region_name=settings.region)
    return session.client(service, endpoint_url=args.endpoint_url)


def infra_clients(settings: Settings, args: argparse.Namespace) -> Clients:
    session = boto3.Session(region_name=settings.region)
    return Clients.from_session(session, endpoint_url=args.endpoint_url)


def queue_arn(sqs: Any, name: str) -> str:
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as error:
        if "NonExistentQueue" in error_code(error):
            raise MappingError(
                f"queue {name} does not exist: run `python -m scripts.provision infra` first"
            ) from None
        raise
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return attributes["Attributes"]["QueueArn"]


def infra_step(settings: Settings, args: argparse.Namespace) -> list[Action]:
    clients = infra_clients(settings, args)
    return provision_stack(clients, stack_spec(settings), dry_run=args.dry_run)


def partner_source_step(settings: Settings, args: argparse.Namespace) -> list[Action]:
    if not args.source:
        raise PartnerSourceError(
            "partner-source needs --source NAME (the partner event source, aws.partner/...)"
        )
    clients = infra_clients(settings, args)
    actions = ensure_partner_source(clients.events, args.source, args.dry_run)
    if args.no_route:
        actions.append(Action("rule", f"{args.source} -> ingest", "skipped", "--no-route"))
        return actions
    rule_actions, _ = ensure_rule(
        clients, args.source, partner_rule(settings, args.source), args.dry_run
    )
    return actions + rule_actions


def event_source_mapping_step(settings: Settings, args: argparse.Namespace) -> list[Action]:
    function_name = args.function or ingest_function_name(settings)
    arn = queue_arn(aws_client(settings, args, "sqs"), settings.names.ingest_queue)
    return ensure_report_batch_item_failures(
        aws_client(settings, args, "lambda"), function_name, arn, args.dry_run
    )


def credentials_step(
    settings: Settings, args: argparse.Namespace, stdin: TextIO | None = None
) -> list[Action]:
    names = settings.names
    auth_mode = load_cxone_settings().auth_mode
    credentials = read_credentials_input(stdin or sys.stdin, auth_mode, names.credentials_secret)
    secrets_client = aws_client(settings, args, "secretsmanager")
    return [
        ensure_credentials_secret(
            secrets_client, names.credentials_secret, credentials, args.dry_run
        ),
        ensure_push_secret(secrets_client, names.push_secret, args.dry_run),
    ]


def account_id(settings: Settings, args: argparse.Namespace) -> str:
    if settings.account_id:
        return settings.account_id
    return aws_client(settings, args, "sts").get_caller_identity()["Account"]


def cxone_connection_step(settings: Settings, args: argparse.Namespace) -> list[Action]:
    cxone_settings = load_cxone_settings()
    secrets_client = aws_client(settings, args, "secretsmanager")
    client = CXoneClient(cxone_settings)
    # The token the functions use, through the one accessor: refreshed into the token secret
    # first when it is missing or near expiry (before the first deploy nothing has stored one).
    refreshed = refresh_token(secrets_client, settings, cxone_settings, client, utc_now())
    if refreshed.failed and not refreshed.has_valid_token:
        raise CredentialsError(refreshed.error_message or "no CXone token could be obtained")
    token = TokenProvider(secrets_client, settings.names.token_secret).get()
    spec = ConnectionSpec.for_stage(settings, account_id(settings, args))
    return [ensure_cxone_connection(client, token, spec, args.dry_run)]


def rotate_push_secret_step(settings: Settings, args: argparse.Namespace) -> list[Action]:
    return [
        rotate_push_secret(
            aws_client(settings, args, "secretsmanager"),
            settings.names.push_secret,
            settings.push_secret_overlap_seconds,
            args.dry_run,
        )
    ]


def _credentials_in_all(settings: Settings, args: argparse.Namespace) -> list[Action]:
    """Stored credentials are kept; missing ones are read (stdin or prompt) and stored."""
    names = settings.names
    secrets_client = aws_client(settings, args, "secretsmanager")
    try:
        read_credentials(secrets_client, names.credentials_secret, load_cxone_settings().auth_mode)
    except CredentialsError:
        try:
            return credentials_step(settings, args)
        except CredentialsInputError as error:
            # Nothing (or nothing usable) on stdin: the other steps still run.
            return [
                Action("step", "credentials", "skipped", str(error)),
                ensure_push_secret(secrets_client, names.push_secret, args.dry_run),
            ]
    return [
        Action("secret", names.credentials_secret, "present", "kept the stored credentials"),
        ensure_push_secret(secrets_client, names.push_secret, args.dry_run),
    ]


def all_step(settings: Settings, args: argparse.Namespace) -> list[Action]:
    actions = infra_step(settings, args)
    actions += _credentials_in_all(settings, args)
    function_name = args.function or ingest_function_name(settings)
    if not function_exists(aws_client(settings, args, "lambda"), function_name):
        actions.append(
            Action(
                "step",
                "chalice deploy",
                WAITING,
                f"function {function_name} is not deployed: run `chalice deploy --stage "
                f"{settings.stage}`, then `python -m scripts.provision all --stage "
                f"{settings.stage}` again for event-source-mapping and cxone-connection",
            )
        )
        return actions
    actions += event_source_mapping_step(settings, args)
    actions += cxone_connection_step(settings, args)
    return actions


STEPS: dict[str, StepFunction] = {
    "infra": infra_step,
    "partner-source": partner_source_step,
    "event-source-mapping": event_source_mapping_step,
    "credentials": credentials_step,
    "cxone-connection": cxone_connection_step,
    "rotate-push-secret": rotate_push_secret_step,
    "all": all_step,
}


def _style(action: Action) -> str:
    if action.changed:
        return "green"
    if action.status.startswith("would") or action.status in ("skipped", WAITING):
        return "yellow"
    return ""


def render(actions: Sequence[Action], console: Console, dry_run: bool) -> None:
    table = Table(title="provisioning plan" if dry_run else "provisioning")
    for column in ("kind", "name", "status", "detail"):
        table.add_column(column, overflow="fold")
    for action in actions:
        table.add_row(action.kind, action.name, action.status, action.detail, style=_style(action))
    console.print(table)
    changed = sum(a.changed for a in actions)
    pending = sum(a.status.startswith("would") for a in actions)
    skipped = [a.name for a in actions if a.status == "skipped"]
    if dry_run:
        console.print(f"dry run: {pending} change(s) planned, nothing was changed")
    elif changed == 0:
        console.print("everything is already present: nothing changed")
    else:
        console.print(f"{changed} change(s) made")
    if skipped:
        console.print(f"skipped: {', '.join(skipped)} (see the detail column)")
    for action in actions:
        if action.status == WAITING:
            console.print(f"stopped at {action.name}: {escape(action.detail)}", highlight=False)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.provision",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("step", nargs="?", default="infra", choices=list(STEPS))
    parser.add_argument("--stage", help="stage to provision (default: RELAY_STAGE or dev)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument(
        "--endpoint-url",
        default=None,
        help="AWS endpoint (default: AWS_ENDPOINT_URL, else the real AWS endpoints)",
    )
    parser.add_argument("--source", help="partner-source: the partner event source name")
    parser.add_argument(
        "--no-route",
        action="store_true",
        help="partner-source: associate only; do not route the partner bus to the ingest queue",
    )
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=PROJECT_DIR,
        help="where .chalice/config.json is (default: this checkout)",
    )
    parser.add_argument(
        "--function",
        help="event-source-mapping: the ingest function (default: <app>-<stage>-ingest)",
    )
    parser.add_argument("--json", action="store_true", help="print the actions as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    args = parse_args(argv)
    console = console or Console()
    # The local stack while `make run` is up and no target flag is given, else AWS's chain.
    use_local_stack("scripts.provision", explicit_target=bool(args.endpoint_url or args.stage))
    try:
        settings = load_settings(stage_env(args.stage, args.project_dir))
        if args.step == "all":
            console.print(f"order: {ALL_ORDER}")
        actions = STEPS[args.step](settings, args)
    except STEP_ERRORS as error:
        console.print(f"[red]{args.step} failed:[/red] {escape(str(error))}", highlight=False)
        return 1
    if args.json:
        print(json.dumps([{**vars(action), "changed": action.changed} for action in actions]))
        return 0
    render(actions, console, args.dry_run)
    return 0

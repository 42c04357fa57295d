"""`python -m scripts.provision` against the moto server: every step idempotent, dry runs
change nothing, and what a step claims is read back from AWS (the partner bus association, the
mapping's ReportBatchItemFailures, the stored secrets)."""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from rich.console import Console

from chalicelib.config import load_settings
from chalicelib.cxone.tokens import parse_credentials
from scripts.local.cxone_standin import CXoneStandIn
from scripts.provisioning import cli as provision
from scripts.provisioning.actions import Action
from scripts.provisioning.credentials import read_credentials_input
from scripts.provisioning.mapping import ingest_function_name
from scripts.provisioning.partner import PartnerSourceError, ensure_partner_source

CLIENT_ID = "relay-client"
CLIENT_SECRET = "s3cr3t-" + uuid.uuid4().hex  # unique: a leak cannot match by accident


def run_cli(argv: Sequence[str]) -> tuple[int, str]:
    """Run the CLI as a user would; returns its exit code and everything it printed."""
    buffer = io.StringIO()
    code = provision.main(list(argv), console=Console(file=buffer, width=250, color_system=None))
    return code, buffer.getvalue()


def run_step(argv: Sequence[str]) -> list[Action]:
    """The actions a step reports (same parsing and settings as the CLI)."""
    args = provision.parse_args(list(argv))
    env_stage = {"RELAY_STAGE": args.stage} if args.stage else {}
    settings = load_settings({**os.environ, **env_stage})
    return provision.STEPS[args.step](settings, args)


def statuses(actions: Sequence[Action]) -> set[str]:
    return {action.status for action in actions}


def queue_exists(sqs: Any, name: str) -> bool:
    try:
        sqs.get_queue_url(QueueName=name)
        return True
    except ClientError:
        return False


def secret_exists(secrets: Any, name: str) -> bool:
    try:
        secrets.describe_secret(SecretId=name)
        return True
    except ClientError:
        return False


@pytest.fixture
def settings(relay_env: dict):
    return load_settings()


# --------------------------------------------------------------------------- infra


def test_infra_dry_run_changes_nothing_then_runs_once_and_is_idempotent(settings, boto_session):
    sqs = boto_session.client("sqs")
    dynamodb = boto_session.client("dynamodb")
    events = boto_session.client("events")

    planned = run_step(["infra", "--dry-run"])
    assert planned and all(a.status.startswith("would") for a in planned)
    assert not queue_exists(sqs, settings.names.ingest_queue)
    assert settings.names.ledger_table not in dynamodb.list_tables()["TableNames"]
    with pytest.raises(ClientError):
        events.describe_event_bus(Name=settings.names.event_bus)

    assert "created" in statuses(run_step(["infra"]))
    assert queue_exists(sqs, settings.names.ingest_queue)
    again = run_step(["infra"])
    assert statuses(again) == {"present"}, [a for a in again if a.status != "present"]


# --------------------------------------------------------------------------- partner-source


def test_partner_source_associates_a_bus_of_the_same_name(relay_env, boto_session):
    events = boto_session.client("events")
    source = f"aws.partner/genesys.com/cloud/{uuid.uuid4()}/relay"
    # The partner creates the source in our account; moto plays the partner here.
    events.create_partner_event_source(Name=source, Account=relay_env["RELAY_ACCOUNT_ID"])
    # moto cannot put rules on a bus whose name has a '/', so the route to the ingest queue
    # (infra.ensure_rule on the partner bus) is left out: --no-route.
    argv = ["partner-source", "--source", source, "--no-route"]

    code, output = run_cli([*argv, "--dry-run"])
    assert code == 0 and "would create" in output
    with pytest.raises(ClientError):
        events.describe_event_bus(Name=source)

    first = run_step(argv)
    bus = next(a for a in first if a.kind == "partner-bus")
    state = next(a for a in first if a.kind == "partner-source")
    assert bus.status == "created"
    assert state.detail.startswith("ACTIVE")
    # Read back what EventBridge says, not what the step says.
    assert events.describe_event_bus(Name=source)["Name"] == source
    assert events.describe_event_source(Name=source)["State"] == "ACTIVE"

    second = run_step(argv)
    assert {a.status for a in second if a.kind != "rule"} == {"present"}


def test_partner_source_refuses_a_name_that_is_not_a_partner_source(relay_env):
    code, output = run_cli(["partner-source", "--source", "my-own-bus", "--no-route"])
    assert code == 1
    assert "aws.partner/" in output


def test_partner_source_missing_says_to_set_up_the_partner_side():
    # moto answers DescribeEventSource for an unknown source with an HTTP 500 (a KeyError),
    # not AWS's ResourceNotFoundException: the Stubber plays AWS's answer.
    events = boto3.client("events", region_name="us-east-1")
    source = "aws.partner/genesys.com/cloud/org/missing"
    with Stubber(events) as stub:
        stub.add_client_error(
            "describe_event_source",
            service_error_code="ResourceNotFoundException",
            http_status_code=400,
            expected_params={"Name": source},
        )
        with pytest.raises(PartnerSourceError, match="partner's side"):
            ensure_partner_source(events, source, dry_run=False)


# --------------------------------------------------------------------------- event-source-mapping


def _deploy_ingest_function(boto_session: boto3.Session, settings) -> str:
    """What `chalice deploy` leaves: the ingest function and a mapping without the response type.

    The mapping is created disabled: an enabled one makes moto try to run the function in
    Docker.
    """
    iam = boto_session.client("iam")
    role = iam.create_role(
        RoleName=f"{settings.prefix}-ingest",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def ingest(event, context):\n    return {}\n")
    lambda_client = boto_session.client("lambda")
    function_name = ingest_function_name(settings)
    lambda_client.create_function(
        FunctionName=function_name,
        Runtime="python3.11",
        Role=role,
        Handler="app.ingest",
        Code={"ZipFile": code.getvalue()},
    )
    sqs = boto_session.client("sqs")
    url = sqs.get_queue_url(QueueName=settings.names.ingest_queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return lambda_client.create_event_source_mapping(
        EventSourceArn=arn["QueueArn"], FunctionName=function_name, BatchSize=10, Enabled=False
    )["UUID"]


def test_event_source_mapping_gets_report_batch_item_failures(settings, boto_session):
    run_step(["infra"])
    code, output = run_cli(["event-source-mapping"])
    assert code == 1
    assert "chalice deploy" in output  # no function yet: says what to do first

    mapping_id = _deploy_ingest_function(boto_session, settings)
    lambda_client = boto_session.client("lambda")

    planned = run_step(["event-source-mapping", "--dry-run"])
    assert statuses(planned) == {"would update"}
    assert not lambda_client.get_event_source_mapping(UUID=mapping_id).get("FunctionResponseTypes")

    assert statuses(run_step(["event-source-mapping"])) == {"updated"}
    mapping = lambda_client.get_event_source_mapping(UUID=mapping_id)
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["State"] == "Disabled"  # the step changes the response type, nothing else

    assert statuses(run_step(["event-source-mapping"])) == {"present"}


# --------------------------------------------------------------------------- credentials


def test_credentials_from_stdin_are_stored_and_never_echoed(
    settings, boto_session, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    secrets = boto_session.client("secretsmanager")
    names = settings.names
    piped = json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})

    monkeypatch.setattr("sys.stdin", io.StringIO(piped))
    assert provision.main(["credentials", "--dry-run"]) == 0
    assert not secret_exists(secrets, names.credentials_secret)
    assert not secret_exists(secrets, names.push_secret)

    monkeypatch.setattr("sys.stdin", io.StringIO(piped))
    assert provision.main(["credentials"]) == 0
    stored = secrets.get_secret_value(SecretId=names.credentials_secret)["SecretString"]
    # What the refresh_token schedule reads back is what was piped in.
    assert parse_credentials(stored, "client_credentials", names.credentials_secret).client_secret
    assert json.loads(stored) == {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    push_key = secrets.get_secret_value(SecretId=names.push_secret)["SecretString"]
    assert len(push_key) == 64 and int(push_key, 16) >= 0

    # Two lines work too; the same credentials again change nothing, the push key is kept.
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{CLIENT_ID}\n{CLIENT_SECRET}\n"))
    args = provision.parse_args(["credentials"])
    assert statuses(provision.credentials_step(settings, args)) == {"present"}
    assert secrets.get_secret_value(SecretId=names.push_secret)["SecretString"] == push_key

    rotated = CLIENT_SECRET + "-rotated"
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{CLIENT_ID}\n{rotated}\n"))
    actions = provision.credentials_step(settings, args)
    assert [a.status for a in actions] == ["updated", "present"]
    stored = json.loads(secrets.get_secret_value(SecretId=names.credentials_secret)["SecretString"])
    assert stored["client_secret"] == rotated

    captured = capsys.readouterr()
    printed = captured.out + captured.err + "".join(a.detail + a.name for a in actions)
    assert CLIENT_SECRET not in printed
    assert push_key not in printed


def test_malformed_credentials_are_refused_without_echoing_them(
    settings, boto_session, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"client_secret": CLIENT_SECRET})))
    code, output = run_cli(["credentials"])
    assert code == 1
    assert "client_id" in output  # names what is missing
    assert CLIENT_SECRET not in output
    secrets = boto_session.client("secretsmanager")
    assert not secret_exists(secrets, settings.names.credentials_secret)

    monkeypatch.setattr(
        "sys.stdin", io.StringIO('{"client_id": "x", "client_secret": ' + CLIENT_SECRET)
    )
    code, output = run_cli(["credentials"])
    assert code == 1 and CLIENT_SECRET not in output  # broken JSON: where, never what


def test_credentials_cannot_come_from_argv():
    with pytest.raises(SystemExit):
        provision.parse_args(["credentials", "--client-secret", CLIENT_SECRET])


def test_at_a_terminal_the_secret_is_prompted_without_echo():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    hidden_prompts: list[str] = []

    def getpass_like(prompt: str) -> str:
        hidden_prompts.append(prompt)
        return CLIENT_SECRET

    credentials = read_credentials_input(
        Terminal(),
        "client_credentials",
        "some-secret",
        prompt_secret=getpass_like,
        prompt_text=lambda prompt: CLIENT_ID,
    )
    assert credentials == {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    assert len(hidden_prompts) == 1 and "secret" in hidden_prompts[0]


# --------------------------------------------------------------------------- cxone-connection, all


@pytest.fixture
def cxone(relay_env, monkeypatch: pytest.MonkeyPatch) -> Iterator[CXoneStandIn]:
    with CXoneStandIn(CLIENT_ID, CLIENT_SECRET) as stand_in:
        monkeypatch.setenv("CXONE_AUTH_BASE_URL", stand_in.base_url)
        monkeypatch.setenv("CXONE_API_BASE_URL", stand_in.base_url)
        yield stand_in


def test_cxone_connection_is_created_once(settings, cxone, monkeypatch: pytest.MonkeyPatch):
    code, output = run_cli(["cxone-connection"])
    assert code == 1 and "provision credentials" in output  # no credentials stored yet

    monkeypatch.setattr("sys.stdin", io.StringIO(f"{CLIENT_ID}\n{CLIENT_SECRET}\n"))
    run_step(["credentials"])

    assert statuses(run_step(["cxone-connection", "--dry-run"])) == {"would create"}
    assert cxone.connections == {}

    assert statuses(run_step(["cxone-connection"])) == {"created"}
    [connection] = cxone.connections.values()
    assert connection["eventBusName"] == settings.names.event_bus
    assert connection["awsAccountId"] == settings.account_id

    assert statuses(run_step(["cxone-connection"])) == {"present"}
    assert len(cxone.connections) == 1


def test_all_follows_the_deploy_order_and_stops_at_the_deploy(
    settings, boto_session, cxone, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{CLIENT_ID}\n{CLIENT_SECRET}\n"))
    code, output = run_cli(["all"])
    assert code == 0
    assert provision.ALL_ORDER in output
    assert "stopped at chalice deploy" in output and "chalice deploy --stage" in output
    # Every step before the deploy ran: the stack, the credentials and the generated keys.
    secrets = boto_session.client("secretsmanager")
    for name in (
        settings.names.credentials_secret,
        settings.names.push_secret,
        settings.names.cursor_key_secret,
    ):
        assert secret_exists(secrets, name), name
    assert queue_exists(boto_session.client("sqs"), settings.names.ingest_queue)
    assert cxone.connections == {}  # after the deploy only

    _deploy_ingest_function(boto_session, settings)
    second = run_step(["all"])
    changed = {a.kind: a.status for a in second if a.status != "present"}
    assert changed == {"event-source-mapping": "updated", "cxone-connection": "created"}

    third = run_step(["all"])
    assert statuses(third) == {"present"}

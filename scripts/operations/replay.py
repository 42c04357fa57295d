"""Operator CLI for the replay API: timelines, windows, re-drive jobs.

    python -m scripts.replay timeline INTERACTION_ID [--limit N] [--max-events N]
    python -m scripts.replay window --since T --until T [--detail-type D]
                                    [--interaction-id I] [--limit N] [--max-events N]
    python -m scripts.replay start  --since T --until T --consumer C [--consumer C ...]
                                    [--detail-type D] [--interaction-id I] [--follow]
    python -m scripts.replay status JOB_ID [--follow]
    python -m scripts.replay console [--port N]

Common options, before or after the command: --api-url (default: `api_url` of the running
local stack's .local/stack.json), --sign / --no-sign, --region, --json (machine-readable
output). Failed requests are retried with backoff on 429 and 5xx (re-drive jobs are started
once: only a 429 retries them, since the API refused that request).

`console` serves the operator console on 127.0.0.1 and forwards its API calls to --api-url,
signed with your AWS credentials: a browser cannot sign SigV4 itself.

Requests to a deployed stage are signed with SigV4 (service "execute-api") using the caller's
AWS credentials from the usual chain (environment, profile, SSO, instance role); requests to
127.0.0.1 or localhost go as plain HTTP, since the local stack has no auth. `--sign` forces
signing, `--no-sign` turns it off. Exit status: 0 on success, 1 when the API refused the
request or a followed job failed, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import boto3
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from requests.adapters import HTTPAdapter
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from urllib3.util.retry import Retry

from chalicelib.errors import DependencyUnavailable
from scripts.local.target import LocalStackTarget, use_local_stack

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
REQUEST_TIMEOUT_SECONDS = 30
FOLLOW_INTERVAL_SECONDS = 2.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_API_HOST_REGION = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")


class ApiError(RuntimeError):
    """The API answered with an error; the message is the API's own."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ApiUnreachable(DependencyUnavailable):
    """The API did not answer at all (refused, timed out, no route)."""

    def __init__(self, base_url: str) -> None:
        hint = "is `make run` running?" if is_local(base_url) else "check --api-url and network"
        super().__init__(f"the API at {base_url} is not reachable: {hint}")


class ApiRetry(Retry):
    """Retries 429 and 5xx with exponential backoff, honouring Retry-After.

    POST (starting a re-drive job) is retried on 429 alone: the API refused it unprocessed,
    while after a 5xx the job may exist already and a second one would publish twice.
    """

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method.upper() == "POST":
            return status_code == 429 and self.total is not None and self.total > 0
        return super().is_retry(method, status_code, has_retry_after)


def retrying_session(attempts: int = 5, backoff_seconds: float = 0.5) -> requests.Session:
    retry = ApiRetry(
        total=attempts - 1,
        backoff_factor=backoff_seconds,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        respect_retry_after_header=True,
        raise_on_status=False,  # the last answer is the API's own error, shown as such
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def is_local(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOCAL_HOSTS


def region_for(url: str, explicit: str | None, session: boto3.Session) -> str:
    """--region, else the region in an execute-api host name, else the session's."""
    if explicit:
        return explicit
    match = _API_HOST_REGION.search(urlsplit(url).hostname or "")
    if match:
        return match.group(1)
    if session.region_name:
        return session.region_name
    raise SystemExit("cannot tell the API's region: pass --region or set AWS_REGION")


class ApiClient:
    """JSON over HTTP to the replay API, SigV4-signed when `region` is given."""

    def __init__(
        self,
        base_url: str,
        *,
        region: str | None = None,
        session: boto3.Session | None = None,
        http: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.region = region
        self.session = session
        self.http = http or retrying_session()

    def prepare(self, method: str, path: str, params: dict[str, Any] | None, body: Any) -> dict:
        """The URL, headers and body of a request (signed if this client signs)."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = self.base_url + path + ("?" + urlencode(query, doseq=True) if query else "")
        data = json.dumps(body).encode("utf-8") if body is not None else None
        return self.sign_raw(method, url, data)

    def sign_raw(self, method: str, url: str, data: bytes | None) -> dict:
        """A request for a ready URL and body: JSON headers, SigV4-signed if this client signs."""
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.region is not None:
            session = self.session or boto3.Session()
            credentials = session.get_credentials()
            if credentials is None:
                raise SystemExit("no AWS credentials found to sign the request (see --no-sign)")
            aws_request = AWSRequest(method=method, url=url, data=data, headers=headers)
            SigV4Auth(credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(
                aws_request
            )
            headers = dict(aws_request.headers.items())
        return {"method": method, "url": url, "headers": headers, "data": data}

    def call(
        self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None
    ) -> dict[str, Any]:
        prepared = self.prepare(method, path, params, body)
        try:
            response = self.http.request(**prepared, timeout=REQUEST_TIMEOUT_SECONDS)
        except (requests.ConnectionError, requests.Timeout) as error:
            raise ApiUnreachable(self.base_url) from error
        try:
            document = response.json()
        except ValueError:
            document = None
        if response.status_code >= 400:
            if isinstance(document, dict):
                code = str(document.get("Code") or document.get("message") or "Error")
                message = str(document.get("Message") or document.get("message") or "")
            else:
                code, message = "Error", response.text[:200]
            raise ApiError(response.status_code, code, message)
        if not isinstance(document, dict):
            raise ApiError(response.status_code, "BadResponse", "the API did not answer JSON")
        return document

    # ---- the routes ----

    def pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = self.call("GET", path, {**params, "cursor": cursor})
            yield page
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def events(
        self, path: str, params: dict[str, Any], max_events: int | None
    ) -> Iterator[dict[str, Any]]:
        count = 0
        for page in self.pages(path, params):
            for event in page.get("events", []):
                if max_events is not None and count >= max_events:
                    return
                count += 1
                yield event

    def timeline(
        self, interaction_id: str, limit: int | None, max_events: int | None
    ) -> Iterator[dict[str, Any]]:
        path = f"/interactions/{quote(interaction_id, safe='')}/events"
        return self.events(path, {"limit": limit}, max_events)

    def window(self, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
        params = {
            "since": args.since,
            "until": args.until,
            "detail_type": args.detail_type,
            "interaction_id": args.interaction_id,
            "limit": args.limit,
        }
        return self.events("/replay", params, args.max_events)

    def start_job(self, args: argparse.Namespace) -> dict[str, Any]:
        body: dict[str, Any] = {
            "since": args.since,
            "until": args.until,
            "consumers": args.consumer,
        }
        if args.detail_type:
            body["detail_type"] = args.detail_type
        if args.interaction_id:
            body["interaction_id"] = args.interaction_id
        return self.call("POST", "/replay/jobs", body=body)

    def job(self, job_id: str) -> dict[str, Any]:
        return self.call("GET", f"/replay/jobs/{quote(job_id, safe='')}")


# ---- output ---------------------------------------------------------------------------------


def events_table(title: str, events: Sequence[dict[str, Any]]) -> Table:
    table = Table(title=title, show_lines=False)
    for column in (
        "#",
        "occurred_at",
        "interaction",
        "seq",
        "detail_type",
        "stage/state",
        "event_id",
    ):
        table.add_column(column, overflow="fold")
    for index, event in enumerate(events, start=1):
        flags = " (late)" if event.get("late") else ""
        table.add_row(
            str(index),
            str(event.get("occurred_at")),
            str(event.get("interaction_id")),
            "" if event.get("sequence") is None else str(event["sequence"]),
            str(event.get("detail_type")),
            str(event.get("stage") or event.get("state") or "") + flags,
            str(event.get("event_id")),
        )
    return table


def job_table(job: dict[str, Any]) -> Table:
    table = Table(title=f"replay job {job.get('job_id')}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name in (
        "status",
        "matched",
        "published",
        "skipped",
        "progress",
        "since",
        "until",
        "detail_type",
        "interaction_id",
        "consumers",
        "created_at",
        "finished_at",
        "error",
    ):
        value = job.get(name)
        if value is None:
            continue
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        if name == "progress":
            value = f"{float(value) * 100:.1f}%"
        table.add_row(name, str(value))
    return table


def follow(client: ApiClient, job_id: str, console: Console, interval: float) -> dict[str, Any]:
    """Poll the job until it ends, with a progress bar over its time window."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("matched {task.fields[matched]} · published {task.fields[published]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("queued", total=100, matched=0, published=0)
        while True:
            job = client.job(job_id)
            progress.update(
                task,
                completed=float(job.get("progress") or 0) * 100,
                description=str(job.get("status")),
                matched=job.get("matched", 0),
                published=job.get("published", 0),
            )
            if job.get("status") in ("done", "failed"):
                return job
            time.sleep(interval)


# ---- command line ---------------------------------------------------------------------------


def common_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes; given after the command, they override the root's."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--api-url",
        default=default(None),
        help="API base URL (default: api_url of the running local stack's .local/stack.json)",
    )
    signing = parser.add_mutually_exclusive_group()
    signing.add_argument(
        "--sign",
        dest="sign",
        action="store_true",
        default=default(None),
        help="sign requests with SigV4 even for a local URL",
    )
    signing.add_argument(
        "--no-sign",
        dest="sign",
        action="store_false",
        default=default(None),
        help="never sign (e.g. a deployed stage behind other auth)",
    )
    parser.add_argument(
        "--region",
        default=default(None),
        help="region for SigV4 (default: from the URL or AWS config)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print JSON instead of tables (events: a JSON list)",
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m scripts.replay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common_options(root, defaults=True)
    shared = argparse.ArgumentParser(add_help=False)
    common_options(shared, defaults=False)
    commands = root.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text, parents=[shared])

    def paging(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--limit", type=int, help="page size (1-1000, API default 100)")
        sub.add_argument("--max-events", type=int, help="stop after this many events")

    def window_arguments(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--since", required=True, help="RFC 3339, inclusive (e.g. 2026-11-29T09:00:00Z)"
        )
        sub.add_argument("--until", required=True, help="RFC 3339, exclusive")
        sub.add_argument("--detail-type", help="only events of this detail-type")
        sub.add_argument("--interaction-id", help="only events of this interaction")

    def following(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--follow", action="store_true", help="show progress until the job ends")
        sub.add_argument(
            "--interval",
            type=float,
            default=FOLLOW_INTERVAL_SECONDS,
            help=f"seconds between polls with --follow (default {FOLLOW_INTERVAL_SECONDS:g})",
        )

    timeline = command("timeline", "one interaction's events, in order")
    timeline.add_argument("interaction_id", help="the interaction's id, as delivered")
    paging(timeline)

    window = command("window", "stored events of a time window, chronological")
    window_arguments(window)
    paging(window)

    start = command("start", "start a re-drive job to chosen consumers")
    window_arguments(start)
    start.add_argument(
        "--consumer",
        action="append",
        required=True,
        help="a consumer to re-drive to (repeat for several)",
    )
    following(start)

    status = command("status", "a re-drive job's status and counts")
    status.add_argument("job_id", help="the job_id that `start` printed")
    following(status)

    console = command("console", "serve the operator console on 127.0.0.1, signing its calls")
    console.add_argument(
        "--port", type=int, default=8765, help="local port to serve on (default 8765)"
    )
    return root


def client_for(
    args: argparse.Namespace,
    session: boto3.Session | None = None,
    local: LocalStackTarget | None = None,
) -> ApiClient:
    url = args.api_url or (local.api_url if local else None)
    if not url:
        raise SystemExit("no API URL: pass --api-url, or start the local stack (make run)")
    sign = args.sign if args.sign is not None else not is_local(url)
    session = session or boto3.Session()
    region = region_for(url, args.region, session) if sign else None
    return ApiClient(url, region=region, session=session)


def run(args: argparse.Namespace, client: ApiClient, console: Console) -> int:
    if args.command in ("timeline", "window"):
        if args.command == "timeline":
            events = list(client.timeline(args.interaction_id, args.limit, args.max_events))
            title = f"interaction {args.interaction_id}: {len(events)} events"
        else:
            events = list(client.window(args))
            title = f"{args.since} to {args.until}: {len(events)} events"
        if args.json:
            print(json.dumps(events))  # no events: [], as for any empty listing
        else:
            console.print(events_table(title, events))
        return 0
    if args.command == "start":
        created = client.start_job(args)
        job_id = created["job_id"]
        if not args.follow:
            if args.json:
                print(json.dumps(created))
            else:
                console.print(f"job [bold]{job_id}[/bold] {created['status']}")
                console.print(f"follow it with: python -m scripts.replay status {job_id} --follow")
            return 0
        return _report(follow(client, job_id, console, args.interval), args, console)
    if args.command == "console":
        from scripts.operations.console_proxy import serve_console

        return serve_console(client, args.port, console)
    job = (
        follow(client, args.job_id, console, args.interval)
        if args.follow
        else client.job(args.job_id)
    )
    return _report(job, args, console)


def _report(job: dict[str, Any], args: argparse.Namespace, console: Console) -> int:
    if args.json:
        print(json.dumps(job))
    else:
        console.print(job_table(job))
    return 1 if job.get("status") == "failed" else 0


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    args = parser().parse_args(argv)
    console = console or Console()
    local = use_local_stack("scripts.replay", explicit_target=args.api_url is not None)
    try:
        return run(args, client_for(args, local=local), console)
    except ApiError as error:
        console.print(f"[red]API error {error.status} {error.code}[/red]: {error.message}")
        return 1
    except ApiUnreachable as error:
        # The cause's name says how it failed; its text (URL, pool details) adds nothing.
        console.print(f"[red]{error}[/red] ({type(error.__cause__).__name__})")
        return 1
    except requests.RequestException as error:
        # The exception's text has the URL and the cause, never a credential.
        console.print(f"[red]request failed[/red]: {type(error).__name__}: {error}")
        return 1

"""The whole relay on this machine: `make run` (python -m scripts.local_stack).

An embedded moto server is the AWS endpoint (through the standard AWS_ENDPOINT_URL); the same
provisioning code as for AWS creates everything; pollers stand in for Lambda's SQS event
source mappings, a scheduler for EventBridge schedules, Chalice's local server serves the
REST API, and a CXone stand-in answers token requests. Simulated traffic (CXone, Genesys
Cloud and Amazon Connect, mixed) flows through it unless --no-traffic. Ctrl-C, SIGTERM,
--duration or the reader of its output going away (`make run | head`) stops everything; the
summary is written to <state-dir>/summary.json first, then printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from scripts.local.api_server import LocalApiServer
from scripts.local.view import Output, progress_line, retries_by_group, rows

PROJECT_DIR = Path(__file__).resolve().parents[2]
LOCAL_STAGE = "local"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_problem(port: int) -> str | None:
    """Why the servers could not listen on 127.0.0.1:port, or None when they can.

    Binds the way they do: both moto's and Chalice's servers set SO_REUSEADDR, so a port whose
    last connections sit in TIME_WAIT (a stack stopped a moment ago) is free for them too.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            return error.strerror or str(error)
    return None


def local_environment(aws_endpoint: str) -> dict[str, str]:
    """Variables the app and scripts see: the standard AWS ones, pointed at moto."""
    return {
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "RELAY_STAGE": LOCAL_STAGE,
        "RELAY_ACCOUNT_ID": ACCOUNT_ID,
        # Short local lease: a crashed holder's interactions are taken over in seconds.
        "RELAY_LEASE_SECONDS": "20",
        # The local mapping (scripts/local/runner.py) honours batchItemFailures: the mode for a
        # mapping whose ReportBatchItemFailures is verified, so only failed records come back.
        "RELAY_BATCH_FAILURE_MODE": "report",
        # The live view replaces per-event logs and EMF lines on the console.
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "ERROR"),
        "POWERTOOLS_METRICS_DISABLED": "true",
    }


@dataclass
class Deliveries:
    """What the demo consumers saw: counts, latency (occurred -> consumer), order checks."""

    per_consumer: Counter[str] = field(default_factory=Counter)
    quarantined: Counter[str] = field(default_factory=Counter)
    repeated: Counter[str] = field(default_factory=Counter)
    late: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    seen: set[tuple[str, str]] = field(default_factory=set)
    last_interaction_id: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, consumer: str, message: dict[str, Any], now: datetime) -> None:
        from chalicelib.formats import parse_rfc3339

        occurred = parse_rfc3339(message["occurred_at"])
        with self.lock:
            self.last_interaction_id = message["interaction_id"]
            self.per_consumer[consumer] += 1
            key = (consumer, message["event_id"])
            if key in self.seen:
                self.repeated[consumer] += 1
            self.seen.add(key)
            if message.get("late"):
                self.late[consumer] += 1
            self.latencies_ms.append((now - occurred).total_seconds() * 1000)

    def percentiles(self) -> dict[str, float | None]:
        with self.lock:
            values = sorted(self.latencies_ms)
        if not values:
            return {"p50": None, "p95": None, "p99": None}
        return {
            f"p{q}": values[min(len(values) - 1, int(len(values) * q / 100))] for q in (50, 95, 99)
        }


class DemoConsumers:
    """Reads every subscriber queue (moto slows down as queues grow), as a consumer would."""

    def __init__(self, sqs: Any, queues: dict[str, str], quarantine_url: str) -> None:
        self.sqs = sqs
        self.queues = queues
        self.quarantine_url = quarantine_url
        self.deliveries = Deliveries()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        targets = [*self.queues.items(), ("quarantine", self.quarantine_url)]
        for consumer, url in targets:
            thread = threading.Thread(
                target=self._drain, args=(consumer, url), name=f"consumer-{consumer}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)

    def _drain(self, consumer: str, url: str) -> None:
        from chalicelib.formats import utc_now

        while not self._stop.is_set():
            try:
                response = self.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
            except Exception:
                self._stop.wait(1)
                continue
            messages = response.get("Messages", [])
            now = utc_now()
            for message in messages:
                body = json.loads(message["Body"])
                if consumer == "quarantine":
                    with self.deliveries.lock:
                        self.deliveries.quarantined[body.get("reason", "?")] += 1
                else:
                    self.deliveries.record(consumer, body, now)
            if messages:
                self.sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                        for n, m in enumerate(messages)
                    ],
                )


def subscribe_queue(sqs: Any, sns: Any, topic_arn: str, queue_name: str) -> str:
    """An SQS queue subscribed to a topic with raw message delivery; returns its URL."""
    fifo = topic_arn.endswith(".fifo")
    attributes = {"FifoQueue": "true"} if fifo else {}
    url = sqs.create_queue(QueueName=queue_name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    existing = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    if not any(s["Endpoint"] == arn for s in existing):
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"RawMessageDelivery": "true"},
        )
    return url


def subscriber_queue_name(topic_name: str) -> str:
    if topic_name.endswith(".fifo"):
        return topic_name.removesuffix(".fifo") + "-subscriber.fifo"
    return topic_name + "-subscriber"


class Traffic:
    """Simulated traffic of the enabled providers (CXone, Genesys, Amazon Connect) put on the
    buses at a steady rate, timestamps on the wall clock: Connect's on the default bus, the
    others on the stage's bus (where the Genesys rule stands in for the partner bus's)."""

    def __init__(
        self,
        events_client: Any,
        bus: str,
        rate: float,
        source: str,
        connect_bus: str,
        providers: Sequence[str],
    ) -> None:
        from scripts.traffic.providers import make_traffic
        from scripts.traffic.simulate import TrafficProfile, bus_by_source

        self.events_client = events_client
        self.bus = bus_by_source(bus, connect_bus)
        self.rate = rate
        # One simulated gap per real one, so occurred_at tracks the clock (latency is real).
        profile = TrafficProfile(mean_gap_ms=1000.0 / rate)
        self.generator = make_traffic("mix", profile, cxone_source=source, mix=providers)
        self.clamp = WallClockClamp()
        self.sent = 0
        self.send_failures = 0
        self.run_result: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _on_sent(self, sent: int, failed: int) -> None:
        self.sent, self.send_failures = sent, failed

    def _send(self, events: list[dict[str, Any]]) -> Any:
        from scripts.traffic.simulate import send_to_bus

        self.clamp.apply(events)
        return send_to_bus(self.events_client, self.bus, events)

    def _loop(self) -> None:
        from scripts.traffic.simulate import run_traffic

        self.run_result = run_traffic(
            self._send,
            self.generator,
            rate=self.rate,
            duration=float("inf"),
            on_sent=self._on_sent,
            stop=self._stop,
        )


class WallClockClamp:
    """Keeps simulated timestamps from being ahead of the wall clock when they are sent.

    The generator's clock is a random walk around the wall clock, and its reordering sends
    some events before older ones, so an event can be due seconds from now: a consumer would
    then see it before it "occurred" (negative latency). At send time a timestamp still in the
    future becomes now. The mapping is remembered, so a later re-delivery of the same event
    (the generator copies events to make duplicates) carries the same new timestamp and stays
    an exact duplicate. CXone order is kept by `sequence`, which every simulated CXone event
    carries; Genesys and Amazon Connect events keep their own times (their clocks run behind
    the wall clock, and only an envelope `time` still ahead of it moves).
    """

    REMEMBERED = 20_000  # far more than the generator's re-delivery window

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        from chalicelib.formats import utc_now

        self._now = now or utc_now
        self._moved: OrderedDict[str, str] = OrderedDict()

    def apply(self, events: list[dict[str, Any]]) -> None:
        from chalicelib.formats import rfc3339

        now = self._now()
        for event in events:
            detail = event.get("detail")
            if isinstance(detail, dict) and isinstance(detail.get("timestamp"), str):
                detail["timestamp"] = self._clamped(detail["timestamp"], now, rfc3339)
            if isinstance(event.get("time"), str):
                # EventBridge's envelope time has one-second resolution.
                event["time"] = self._clamped(
                    event["time"], now.replace(microsecond=0), _envelope_time
                )

    def _clamped(self, text: str, now: datetime, render: Callable[[datetime], str]) -> str:
        from chalicelib.formats import parse_rfc3339

        if text in self._moved:
            return self._moved[text]
        try:
            moment = parse_rfc3339(text)
        except ValueError:  # the simulated invalid events keep their broken timestamps
            return text
        if moment <= now:
            return text
        self._moved[text] = render(now)
        if len(self._moved) > self.REMEMBERED:
            self._moved.popitem(last=False)
        return self._moved[text]


def _envelope_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class LocalStack:
    args: argparse.Namespace
    console: Any
    output: Output = field(default_factory=Output)
    moto: Any = None
    pollers: list[Any] = field(default_factory=list)
    scheduler: Any = None
    traffic: Traffic | None = None
    consumers: DemoConsumers | None = None
    stand_in: Any = None
    stack: dict[str, Any] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    sqs: Any = None
    api: LocalApiServer | None = None
    _queue_depths: dict[str, int | None] = field(default_factory=dict)
    _queue_depths_at: float = 0.0
    final_status: dict[str, Any] = field(default_factory=dict)

    # -- start ---------------------------------------------------------------------------
    def start(self) -> None:
        from scripts.local.aws_server import LocalAwsServer

        # moto logs every request through werkzeug; the live view is the console's.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        aws_port = self.args.aws_port or free_port()
        for name, port in (("--aws-port", aws_port), ("--api-port", self.args.api_port)):
            problem = port_problem(port)
            if problem:
                raise SystemExit(f"cannot listen on 127.0.0.1:{port} ({name}): {problem}")
        moto = LocalAwsServer(ip_address="127.0.0.1", port=aws_port, verbose=False)
        moto.start()
        self.moto = moto
        endpoint = f"http://127.0.0.1:{aws_port}"
        os.environ.update(local_environment(endpoint))
        self.console.print(f"AWS (moto) on {endpoint}")

        import boto3

        from chalicelib.config import load_settings
        from chalicelib.stack import stack_spec
        from scripts.provisioning.infra import Clients, provision_infrastructure

        settings = load_settings()
        session = boto3.Session(region_name=REGION)
        clients = Clients.from_session(session)
        self.sqs = clients.sqs
        actions = provision_infrastructure(clients, stack_spec(settings), dry_run=False)
        self.console.print(f"provisioned {sum(a.changed for a in actions)} resources")
        self._start_cxone(session, settings)
        self._start_push_secret(session, settings)

        from chalicelib.runtime import get_runtime

        runtime = get_runtime()
        self._start_app(runtime)
        self.stack = self._describe(runtime, clients)
        self.args.state_dir.mkdir(parents=True, exist_ok=True)
        stack_file = self.args.state_dir / "stack.json"
        stack_file.write_text(json.dumps(self.stack, indent=2) + "\n")
        self.console.print(f"wrote {stack_file}; REST API on {self.stack['api_url']}")
        self.console.print(
            f"operator console: {self.stack['api_url']}/console · CLIs find this stack by "
            "themselves: python -m scripts.replay timeline ID, python -m scripts.dlq list",
            highlight=False,
            soft_wrap=True,
        )
        if not self.args.no_traffic:
            if not self.args.keep_deliveries:
                self.consumers = DemoConsumers(
                    clients.sqs,
                    {c: v["queue_url"] for c, v in self.stack["consumers"].items()},
                    self.stack["quarantine"]["queue_url"],
                )
                self.consumers.start()
            enabled = {"genesys": settings.genesys_enabled, "connect": settings.connect_enabled}
            providers = ["cxone", *(name for name, on in enabled.items() if on)]
            self.traffic = Traffic(
                clients.events,
                settings.names.event_bus,
                self.args.rate,
                settings.event_source,
                settings.connect_event_bus,
                providers,
            )
            self.traffic.start()

    def _start_cxone(self, session: Any, settings: Any) -> None:
        """The CXone stand-in, and credentials for it, so token refresh runs locally."""
        from scripts.local.cxone_standin import CXoneStandIn

        self.stand_in = CXoneStandIn("local-client", "local-secret")
        self.stand_in.start()
        os.environ["CXONE_AUTH_BASE_URL"] = self.stand_in.base_url
        secrets = session.client("secretsmanager")
        credentials = json.dumps({"client_id": "local-client", "client_secret": "local-secret"})
        try:
            secrets.create_secret(Name=settings.names.credentials_secret, SecretString=credentials)
        except secrets.exceptions.ResourceExistsException:
            secrets.put_secret_value(
                SecretId=settings.names.credentials_secret, SecretString=credentials
            )
        self.console.print(f"CXone stand-in on {self.stand_in.base_url}")

    def _start_push_secret(self, session: Any, settings: Any) -> None:
        """The signing secret of POST /events, made by the same step as on AWS.

        Its value is never printed (no secret in any output, even a throwaway one): senders
        read it from Secrets Manager by the name that `.local/stack.json` gives under `push`."""
        from scripts.provisioning.credentials import ensure_push_secret

        secrets = session.client("secretsmanager")
        ensure_push_secret(secrets, settings.names.push_secret, dry_run=False)
        self.console.print(
            f"POST /events signing secret: Secrets Manager {settings.names.push_secret!r}",
            highlight=False,
            soft_wrap=True,
        )

    def _start_app(self, runtime: Any) -> None:
        from chalice.app import Rate, ScheduledEventConfig, SQSEventConfig
        from chalice.cli.factory import CLIFactory

        import app as app_module
        from scripts.local.runner import Scheduler, SqsPoller, rate_seconds

        app = app_module.app
        config = CLIFactory(str(PROJECT_DIR)).create_config_obj(chalice_stage_name=LOCAL_STAGE)
        self.scheduler = Scheduler(REGION)
        for source in app.event_sources:
            handler = app.handler_map[source.name]
            timeout = config.scope(LOCAL_STAGE, source.name).lambda_timeout or 60
            if isinstance(source, SQSEventConfig):
                url = runtime.sqs.get_queue_url(QueueName=source.queue)["QueueUrl"]
                poller = SqsPoller(
                    runtime.sqs,
                    name=source.name,
                    queue_url=url,
                    queue_arn=f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{source.queue}",
                    region=REGION,
                    handler=handler,
                    batch_size=source.batch_size,
                    batching_window_seconds=source.maximum_batching_window_in_seconds,
                    timeout_seconds=timeout,
                    concurrency=self.args.concurrency,
                )
                poller.start()
                self.pollers.append(poller)
            elif isinstance(source, ScheduledEventConfig) and isinstance(
                source.schedule_expression, Rate
            ):
                interval = rate_seconds(source.schedule_expression)
                self.scheduler.add(source.name, handler, interval, timeout)
        self.scheduler.start()
        self.api = LocalApiServer(app, config, self.args.api_port, self.live_status)
        self.api.start()

    def _describe(self, runtime: Any, clients: Any) -> dict[str, Any]:
        settings = runtime.settings
        consumers = {}
        for consumer, topic_arn in runtime.consumer_topics.items():
            name = subscriber_queue_name(settings.consumer_topic_name(consumer))
            url = subscribe_queue(clients.sqs, clients.sns, topic_arn, name)
            consumers[consumer] = {"topic_arn": topic_arn, "queue_url": url}
        quarantine_name = subscriber_queue_name(settings.names.quarantine_topic)
        quarantine_url = subscribe_queue(
            clients.sqs, clients.sns, runtime.quarantine_topic, quarantine_name
        )

        def queue_url(name: str) -> str:
            return clients.sqs.get_queue_url(QueueName=name)["QueueUrl"]

        return {
            "aws_endpoint_url": os.environ["AWS_ENDPOINT_URL"],
            "region": REGION,
            "stage": LOCAL_STAGE,
            "event_bus_name": settings.names.event_bus,
            # Amazon Connect contact events go on the default bus, as AWS publishes them.
            "default_event_bus_name": settings.connect_event_bus,
            "event_source": settings.event_source,
            "ingest_queue_url": queue_url(settings.names.ingest_queue),
            "ingest_dlq_url": queue_url(settings.names.ingest_dlq),
            "consumers": consumers,
            "quarantine": {"topic_arn": runtime.quarantine_topic, "queue_url": quarantine_url},
            "tables": {
                "ledger": settings.names.ledger_table,
                "events": settings.names.events_table,
                "time_index": settings.names.time_index_table,
                "replay_jobs": settings.names.jobs_table,
            },
            "api_url": f"http://127.0.0.1:{self.args.api_port}",
            "push": {
                "url": f"http://127.0.0.1:{self.args.api_port}/events",
                "secret_name": settings.names.push_secret,
            },
            "cxone_url": self.stand_in.base_url if self.stand_in else None,
        }

    # -- run -----------------------------------------------------------------------------
    def queue_depths(self) -> dict[str, int | None]:
        """Ingest backlog, in flight and DLQ depth, sampled at most once a second."""
        if self.sqs is None or not self.stack:
            return {}
        if time.monotonic() - self._queue_depths_at < 1.0:
            return self._queue_depths
        depths: dict[str, int | None] = {}
        wanted = {
            "ingest_backlog": ("ingest_queue_url", "ApproximateNumberOfMessages"),
            "in_flight": ("ingest_queue_url", "ApproximateNumberOfMessagesNotVisible"),
            "dlq_depth": ("ingest_dlq_url", "ApproximateNumberOfMessages"),
        }
        for name, (queue, attribute) in wanted.items():
            try:
                attributes = self.sqs.get_queue_attributes(
                    QueueUrl=self.stack[queue], AttributeNames=[attribute]
                )["Attributes"]
                depths[name] = int(attributes[attribute])
            except Exception:  # a row shows "?" while moto is busy or stopping
                depths[name] = None
        self._queue_depths, self._queue_depths_at = depths, time.monotonic()
        return depths

    def status(self) -> dict[str, Any]:
        from chalicelib.telemetry import TALLY

        tally = TALLY.snapshot()
        deliveries = self.consumers.deliveries if self.consumers else None
        return {
            "elapsed_s": round(time.monotonic() - self.started_at, 1),
            "sent": self._sent(),
            "tally": tally,
            "queues": self.queue_depths(),
            "retries": retries_by_group(tally),
            "delivered": dict(deliveries.per_consumer) if deliveries else {},
            "repeated": dict(deliveries.repeated) if deliveries else {},
            "quarantine_seen": dict(deliveries.quarantined) if deliveries else {},
            "latency_ms": deliveries.percentiles() if deliveries else {},
            "last_interaction_id": deliveries.last_interaction_id if deliveries else None,
            "token_refreshes": dict(self.scheduler.runs) if self.scheduler else {},
            "pollers": {p.name: p.stats.as_dict() for p in self.pollers},
        }

    def live_status(self) -> dict[str, Any]:
        """The status with its display rows: the console's live counters (GET /_local/status)."""
        status = self.status()
        consumers = list(self.stack.get("consumers", {}))
        return {
            **status,
            "api_url": self.stack.get("api_url"),
            "consumers": consumers,
            "rows": rows(status, consumers),
        }

    def _sent(self) -> dict[str, int]:
        if self.traffic is None:
            return {}
        if self.traffic.run_result is not None:  # after the run: reconciled by dedup key
            summary = self.traffic.run_result.summary
            return {
                "sent": summary.total,
                "valid": summary.valid,
                "duplicate": summary.duplicates,
                "invalid": summary.invalid,
                "send_failures": len(self.traffic.run_result.failed),
            }
        return {"sent": self.traffic.sent, "send_failures": self.traffic.send_failures}

    def render(self, status: dict[str, Any]) -> Any:
        from rich.table import Table

        table = Table(title=f"CXone Event Relay, local stack ({status['elapsed_s']} s)")
        table.add_column("what")
        table.add_column("count", justify="right")
        for label, value in rows(status, list(self.stack.get("consumers", {}))):
            table.add_row(label, value)
        return table

    def run(self, stop: threading.Event) -> None:
        """Until `stop`, --duration or the output's reader leaves: a live view or plain lines."""
        deadline = None if self.args.duration is None else time.monotonic() + self.args.duration

        def running() -> bool:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            return not stop.is_set() and not self.output.closed

        if self.console.is_terminal:
            from rich.live import Live

            with Live(
                self.render(self.status()), console=self.console, refresh_per_second=2
            ) as live:
                while running():
                    stop.wait(0.5)
                    live.update(self.render(self.status()))
            return
        next_line = time.monotonic()
        while running():
            if time.monotonic() >= next_line:
                consumers = list(self.stack.get("consumers", {}))
                self.output.write_line(progress_line(self.status(), consumers))
                next_line = time.monotonic() + self.args.progress_seconds
            stop.wait(0.5)

    # -- stop ----------------------------------------------------------------------------
    def stop(self) -> None:
        if self.traffic:
            self.traffic.stop()
            # Let in-flight events settle so the summary reconciles.
            time.sleep(min(5.0, self.args.settle_seconds))
        for poller in self.pollers:
            poller.stop()
        if self.scheduler:
            self.scheduler.stop()
        if self.consumers:
            self.consumers.stop()
        if self.stand_in:
            self.stand_in.stop()
        # Sampled while moto still answers: the summary's queue rows.
        self._queue_depths_at = 0.0
        self.final_status = self.status()
        if self.api:
            self.api.stop()
        if self.moto:
            self.moto.stop()
        if self.stack:  # this run wrote it; the CLIs target a local stack only while it exists
            (self.args.state_dir / "stack.json").unlink(missing_ok=True)

    def summary(self) -> None:
        """summary.json first (the reader may be gone), then the table and what to try next."""
        status = self.final_status or self.status()
        summary_file = self.args.state_dir / "summary.json"
        summary_file.parent.mkdir(parents=True, exist_ok=True)
        summary_file.write_text(json.dumps(status, indent=2) + "\n")
        if self.output.closed:
            return
        self.console.print(self.render(status))
        self.console.print(f"summary written to {summary_file}")
        self.console.print(closing_hint(status, self.args.api_port), highlight=False)


def closing_hint(status: dict[str, Any], api_port: int) -> str:
    """What to try next: the stack's data lived in its moto, so it starts with a new stack."""
    interaction = status.get("last_interaction_id") or "INTERACTION_ID"
    return (
        "next: `make run ARGS=--no-traffic` (or plain `make run`), then in another shell "
        f"`python -m scripts.replay timeline {interaction}` or open "
        f"http://127.0.0.1:{api_port}/console (the console: timelines, windows, re-drive jobs)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.local_stack", description=__doc__)
    parser.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    parser.add_argument("--no-traffic", action="store_true", help="no simulated traffic")
    parser.add_argument(
        "--keep-deliveries",
        action="store_true",
        help="leave the subscriber queues alone (no demo consumers)",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="simulated events per second")
    parser.add_argument("--aws-port", type=int, default=0, help="moto's port (default: free)")
    parser.add_argument("--api-port", type=int, default=8000, help="REST API port")
    parser.add_argument(
        "--concurrency", type=int, default=3, help="batches in flight per queue (Lambda scaling)"
    )
    parser.add_argument(
        "--state-dir", type=Path, default=Path(".local"), help="where stack.json is written"
    )
    parser.add_argument(
        "--progress-seconds",
        type=float,
        default=5.0,
        help="when stdout is not a terminal: seconds between progress lines (default 5)",
    )
    parser.add_argument("--settle-seconds", type=float, default=3.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rate <= 0:
        parser.error("--rate must be positive")
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    args = parse_args(argv)
    output = Output()
    console = Console(file=output)
    stop = threading.Event()
    # Installed first: a Ctrl-C or SIGTERM at any moment still ends in a summary.
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stack = LocalStack(args, console, output)
    try:
        stack.start()
        stack.run(stop)
    finally:
        stack.stop()
    stack.summary()
    return 0

"""Inspect the ingest dead-letter queue and re-drive its messages once the cause is fixed.

    python -m scripts.dlq list    [--stage S] [--queue NAME-or-URL] [--max N] [--json]
    python -m scripts.dlq redrive [--stage S] [--queue NAME-or-URL] [--target NAME-or-URL]
                                  [--max N] [--dry-run] [--json]

With no --endpoint-url, --region or --stage, while the local stack runs (`make run`), this
targets the local stack (scripts.local.target); otherwise AWS's standard configuration.

`list` peeks: it receives the messages and makes them visible again at once, so it leaves the
queue as it was (apart from SQS's receive counts). `redrive` sends each message to the source
queue and deletes it from the DLQ only once the send succeeded: a message is never lost, and a
crash between the two steps can only leave a copy in both queues (the relay deduplicates it).
By default the queues are the stage's ingest DLQ and ingest queue (`chalicelib.config`).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import NoRegionError

from chalicelib.aws import error_code
from chalicelib.config import ConfigError, load_settings
from chalicelib.formats import rfc3339
from scripts.local.target import unreachable_hint, use_local_stack

# SQS batch requests take at most 10 entries.
MAX_BATCH_ENTRIES = 10
# While a run works on received messages they stay hidden from other readers this long.
WORK_VISIBILITY_SECONDS = 120
# Peeked messages are made visible again at once; this only bounds a peek that crashed.
PEEK_VISIBILITY_SECONDS = 30
PREVIEW_CHARS = 100


@dataclass(frozen=True)
class DlqMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_at: str | None  # when the message first entered a queue, RFC 3339
    attributes: dict[str, Any] = field(default_factory=dict)  # MessageAttributes, as sent

    @property
    def preview(self) -> str:
        return self.body[:PREVIEW_CHARS]


@dataclass(frozen=True)
class RedriveFailure:
    message_id: str
    step: str  # "send": still in the DLQ; "delete": sent, but also still in the DLQ
    error_code: str
    error_message: str


@dataclass(frozen=True)
class RedriveResult:
    moved: int  # sent to the target and deleted from the DLQ
    failed: list[RedriveFailure] = field(default_factory=list)
    dry_run: bool = False
    would_move: int = 0  # with dry_run: the messages a real run would move


def _sent_at(attributes: dict[str, str]) -> str | None:
    raw = attributes.get("SentTimestamp")
    if not raw:
        return None
    return rfc3339(datetime.fromtimestamp(int(raw) / 1000, UTC))


def _sendable_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """MessageAttributes as ReceiveMessage returns them, reduced to what SendMessage accepts."""
    cleaned: dict[str, Any] = {}
    for name, attribute in attributes.items():
        value = {"DataType": attribute["DataType"]}
        for key in ("StringValue", "BinaryValue"):
            if key in attribute:
                value[key] = attribute[key]
        cleaned[name] = value
    return cleaned


def _receive(
    sqs: Any, queue_url: str, limit: int, visibility_seconds: int, wait_seconds: int
) -> list[DlqMessage]:
    response = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max(1, min(MAX_BATCH_ENTRIES, limit)),
        VisibilityTimeout=visibility_seconds,
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    messages = []
    for raw in response.get("Messages", []):
        attributes = raw.get("Attributes", {})
        messages.append(
            DlqMessage(
                message_id=raw["MessageId"],
                receipt_handle=raw["ReceiptHandle"],
                body=raw["Body"],
                receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
                sent_at=_sent_at(attributes),
                attributes=_sendable_attributes(raw.get("MessageAttributes", {})),
            )
        )
    return messages


def _make_visible(sqs: Any, queue_url: str, messages: Sequence[DlqMessage]) -> None:
    """Hand messages back to the queue at once instead of after the work visibility."""
    for start in range(0, len(messages), MAX_BATCH_ENTRIES):
        chunk = messages[start : start + MAX_BATCH_ENTRIES]
        sqs.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                for i, m in enumerate(chunk)
            ],
        )


def _collect(
    sqs: Any, queue_url: str, max_messages: int | None, wait_seconds: int, visibility_seconds: int
) -> list[DlqMessage]:
    """Receive up to `max_messages` distinct messages (all when None), each kept invisible."""
    collected: dict[str, DlqMessage] = {}
    while max_messages is None or len(collected) < max_messages:
        wanted = MAX_BATCH_ENTRIES if max_messages is None else max_messages - len(collected)
        batch = _receive(sqs, queue_url, wanted, visibility_seconds, wait_seconds)
        if not batch:
            break
        for message in batch:
            collected.setdefault(message.message_id, message)
    return list(collected.values())


def peek_messages(
    sqs: Any, queue_url: str, max_messages: int = 50, *, wait_seconds: int = 1
) -> list[DlqMessage]:
    """Up to `max_messages` of the queue's messages, left in the queue and visible again."""
    messages: list[DlqMessage] = []
    try:
        messages = _collect(sqs, queue_url, max_messages, wait_seconds, PEEK_VISIBILITY_SECONDS)
    finally:
        _make_visible(sqs, queue_url, messages)
    return messages


def _send_batch(
    sqs: Any, target_url: str, messages: Sequence[DlqMessage]
) -> tuple[list[DlqMessage], list[RedriveFailure]]:
    """Send to the target; return the messages confirmed sent and the failures."""
    from botocore.exceptions import BotoCoreError, ClientError

    fifo = target_url.endswith(".fifo")
    entries = []
    for i, message in enumerate(messages):
        entry: dict[str, Any] = {"Id": str(i), "MessageBody": message.body}
        if message.attributes:
            entry["MessageAttributes"] = message.attributes
        if fifo:
            # A standard DLQ keeps no group: one group per message keeps every one movable.
            entry["MessageGroupId"] = message.message_id
            entry["MessageDeduplicationId"] = message.message_id
        entries.append(entry)
    try:
        response = sqs.send_message_batch(QueueUrl=target_url, Entries=entries)
    except (BotoCoreError, ClientError) as error:
        code = error_code(error)
        return [], [RedriveFailure(m.message_id, "send", code, str(error)) for m in messages]
    sent = [messages[int(entry["Id"])] for entry in response.get("Successful", [])]
    failures = [
        RedriveFailure(
            messages[int(entry["Id"])].message_id,
            "send",
            entry.get("Code", "Unknown"),
            entry.get("Message", ""),
        )
        for entry in response.get("Failed", [])
    ]
    return sent, failures


def _delete_batch(
    sqs: Any, queue_url: str, messages: Sequence[DlqMessage]
) -> tuple[int, list[RedriveFailure]]:
    from botocore.exceptions import BotoCoreError, ClientError

    if not messages:
        return 0, []
    entries = [{"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(messages)]
    try:
        response = sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
    except (BotoCoreError, ClientError) as error:
        code = error_code(error)
        return 0, [RedriveFailure(m.message_id, "delete", code, str(error)) for m in messages]
    failures = [
        RedriveFailure(
            messages[int(entry["Id"])].message_id,
            "delete",
            entry.get("Code", "Unknown"),
            entry.get("Message", ""),
        )
        for entry in response.get("Failed", [])
    ]
    return len(response.get("Successful", [])), failures


def redrive(
    sqs: Any,
    dlq_url: str,
    target_url: str,
    max_messages: int | None = None,
    *,
    dry_run: bool = False,
    wait_seconds: int = 1,
) -> RedriveResult:
    """Move up to `max_messages` (all when None) from the DLQ to `target_url`, 10 at a time.

    A message is deleted from the DLQ only after the target confirmed it; one that could not be
    sent stays in the DLQ and is made visible again when the run ends (not during it, so one run
    never retries the same message in a loop).
    """
    if dry_run:
        return RedriveResult(
            moved=0,
            dry_run=True,
            would_move=len(
                peek_messages(sqs, dlq_url, max_messages or 10**9, wait_seconds=wait_seconds)
            ),
        )
    moved = 0
    failures: list[RedriveFailure] = []
    unsent: list[DlqMessage] = []
    seen: set[str] = set()
    try:
        while max_messages is None or len(seen) < max_messages:
            wanted = MAX_BATCH_ENTRIES if max_messages is None else max_messages - len(seen)
            received = _receive(sqs, dlq_url, wanted, WORK_VISIBILITY_SECONDS, wait_seconds)
            batch = [m for m in received if m.message_id not in seen]
            if not batch:
                break
            seen.update(m.message_id for m in batch)
            sent, send_failures = _send_batch(sqs, target_url, batch)
            failed_ids = {f.message_id for f in send_failures}
            unsent.extend(m for m in batch if m.message_id in failed_ids)
            failures.extend(send_failures)
            deleted, delete_failures = _delete_batch(sqs, dlq_url, sent)
            moved += deleted
            failures.extend(delete_failures)
    finally:
        if unsent:
            _make_visible(sqs, dlq_url, unsent)
    return RedriveResult(moved=moved, failed=failures)


# --------------------------------------------------------------------------- CLI


def resolve_queue_url(sqs: Any, name_or_url: str) -> str:
    if name_or_url.startswith(("https://", "http://")):
        return name_or_url
    return sqs.get_queue_url(QueueName=name_or_url)["QueueUrl"]


def default_queue_names(stage: str | None) -> tuple[str, str]:
    """The stage's (ingest DLQ, ingest queue) names, from the relay's own settings."""
    env = dict(os.environ)
    if stage:
        env["RELAY_STAGE"] = stage
    names = load_settings(env).names
    return names.ingest_dlq, names.ingest_queue


def source_queue_of(sqs: Any, dlq_url: str) -> str | None:
    """The one queue whose redrive policy targets this DLQ, if there is exactly one."""
    urls = sqs.list_dead_letter_source_queues(QueueUrl=dlq_url).get("queueUrls", [])
    return urls[0] if len(urls) == 1 else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.dlq", description="List or re-drive the ingest dead-letter queue."
    )
    parser.add_argument(
        "command",
        choices=("list", "redrive"),
        help="list: peek at the messages, leaving them; redrive: move them back to be retried",
    )
    parser.add_argument("--stage", help="stage whose ingest DLQ to use (default RELAY_STAGE)")
    parser.add_argument("--queue", help="the DLQ, by name or URL (default: the stage's)")
    parser.add_argument(
        "--target",
        help="where redrive sends messages, by name or URL (default: the stage's ingest queue, "
        "or with --queue the queue whose redrive policy points at it)",
    )
    parser.add_argument("--max", type=int, help="at most this many messages (list: default 50)")
    parser.add_argument("--dry-run", action="store_true", help="redrive: show, move nothing")
    parser.add_argument("--endpoint-url", help="AWS endpoint (default: AWS_ENDPOINT_URL)")
    parser.add_argument("--region", help="AWS region (default: AWS_REGION or AWS config)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


def _resolve_queues(sqs: Any, args: argparse.Namespace, needs_target: bool) -> tuple[str, str]:
    """(DLQ URL, target URL); the target is "" when the command needs none."""
    if args.queue:
        dlq_url = resolve_queue_url(sqs, args.queue)
        if not needs_target:
            return dlq_url, ""
        if args.target:
            return dlq_url, resolve_queue_url(sqs, args.target)
        target_url = source_queue_of(sqs, dlq_url)
        if target_url is None:
            raise SystemExit(f"no single queue has {dlq_url} as its DLQ: give --target")
        return dlq_url, target_url
    dlq_name, ingest_name = default_queue_names(args.stage)
    dlq_url = resolve_queue_url(sqs, dlq_name)
    if not needs_target:
        return dlq_url, ""
    return dlq_url, resolve_queue_url(sqs, args.target or ingest_name)


def main(argv: Sequence[str] | None = None) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
    from rich.console import Console

    args = build_parser().parse_args(argv)
    console = Console()
    local = use_local_stack(
        "scripts.dlq", explicit_target=bool(args.endpoint_url or args.region or args.stage)
    )
    region = args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    try:
        sqs = boto3.client("sqs", endpoint_url=args.endpoint_url, region_name=region)
        dlq_url, target_url = _resolve_queues(sqs, args, needs_target=args.command == "redrive")
        if args.command == "list":
            messages = peek_messages(sqs, dlq_url, args.max or 50)
            if args.json:
                print(json.dumps({"queue_url": dlq_url, "messages": [asdict(m) for m in messages]}))
            else:
                console.print(messages_table(dlq_url, messages))
            return 0
        result = redrive(sqs, dlq_url, target_url, args.max, dry_run=args.dry_run)
    except ConfigError as error:
        console.print(f"[red]configuration:[/red] {error}")
        return 2
    except NoRegionError:
        console.print("[red]no AWS region:[/red] pass --region or set AWS_REGION")
        return 2
    except EndpointConnectionError as error:
        console.print(f"[red]AWS not reachable:[/red] {error}; {unreachable_hint(local)}")
        return 1
    except (BotoCoreError, ClientError) as error:
        console.print(f"[red]AWS error:[/red] {error}")
        return 1
    if args.json:
        print(json.dumps({"from": dlq_url, "to": target_url, **asdict(result)}))
        return 1 if result.failed else 0
    if result.dry_run:
        console.print(
            f"dry run: would move {result.would_move} message(s) {dlq_url} → {target_url}"
        )
        return 0
    console.print(f"moved {result.moved} message(s) {dlq_url} → {target_url}")
    for failure in result.failed:
        where = "still in the DLQ" if failure.step == "send" else "sent, but still in the DLQ"
        console.print(
            f"[red]{failure.step} failed[/red] {failure.message_id} ({where}): "
            f"{failure.error_code} {failure.error_message[:200]}"
        )
    return 1 if result.failed else 0


def messages_table(dlq_url: str, messages: Sequence[DlqMessage]) -> Any:
    from rich.table import Table

    table = Table(title=f"{len(messages)} message(s) in {dlq_url}")
    table.add_column("message id", overflow="fold", min_width=12)
    table.add_column("receives", justify="right")
    table.add_column("sent at", overflow="fold", min_width=12)
    # The body is what the reader came for: it keeps room on narrow terminals.
    table.add_column(f"body (first {PREVIEW_CHARS} chars)", overflow="fold", min_width=40)
    for message in messages:
        table.add_row(
            message.message_id, str(message.receive_count), message.sent_at or "", message.preview
        )
    return table

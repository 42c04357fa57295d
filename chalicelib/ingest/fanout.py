"""SNS fan-out: PublishBatch to consumer topics, entry by entry accounting, order kept.

Messages of one interaction (their `group`) go to a topic in order; once one fails for a
topic, that interaction's later messages are not sent to it in this invocation (they would
overtake the failed one). They come back on the record's retry.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from chalicelib.aws import NON_RETRYABLE_CODES, AwsFailure, error_code, is_retryable
from chalicelib.model import message_attributes, sns_message_size

MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024
SKIPPED = "SkippedAfterEarlierFailure"


@dataclass(frozen=True)
class OutboundMessage:
    key: str  # unique within one publish call; maps results back to events
    group: str  # the interaction id: order is kept within a group
    body: str
    attributes: dict[str, dict[str, str]]
    dedup_id: str  # FIFO topics: the stable event id (job id + event id on replay)

    @classmethod
    def from_message(cls, key: str, message: Mapping[str, Any], dedup_id: str) -> OutboundMessage:
        return cls(
            key=key,
            group=message["interaction_id"],
            body=json.dumps(message, separators=(",", ":"), ensure_ascii=False),
            attributes=message_attributes(message),
            dedup_id=fifo_id(dedup_id),
        )

    @property
    def size(self) -> int:
        return sns_message_size(self.body, self.attributes)


FIFO_ID_MAX_CHARS = 128
# What SNS accepts in a FIFO MessageGroupId or MessageDeduplicationId: ASCII letters, digits
# and punctuation (`str.isalnum` would let other scripts' letters through, which SNS refuses).
FIFO_ID_CHARS = frozenset(chr(code) for code in range(33, 127))


def fifo_id(value: str) -> str:
    """`value` as a FIFO group or dedup id: as it is when SNS accepts it, else its SHA-256
    (the same value always maps to the same id, so grouping and dedup are kept)."""
    if 0 < len(value) <= FIFO_ID_MAX_CHARS and set(value) <= FIFO_ID_CHARS:
        return value
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class PublishResult:
    """Per message key: published, or the error that kept it from the topic. `refused` holds
    the failed keys SNS refused for the message itself (a non-retryable code for that entry
    alone): retrying cannot fix them, they are poison."""

    published: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    seconds: float = 0.0


def next_request(messages: Sequence[OutboundMessage], one_per_group: bool) -> list[OutboundMessage]:
    """The messages of the next PublishBatch: up to 10 and 256 KB, in order.

    With `one_per_group` (FIFO topics) it holds at most one message per interaction, so a
    failed entry can never be followed by an accepted later entry of its interaction in the
    same request; later messages of a group already in the request wait for the next one.
    Standard topics pack in order (⌈n/10⌉ requests): SNS does not keep order to their
    subscribers anyway, and a lone failed entry there may be overtaken (docs/scaling.md).
    """
    request: list[OutboundMessage] = []
    groups: set[str] = set()
    size = 0
    for message in messages:
        if len(request) == MAX_BATCH_ENTRIES:
            break
        if one_per_group and message.group in groups:
            continue
        if request and size + message.size > MAX_BATCH_BYTES:
            break
        request.append(message)
        groups.add(message.group)
        size += message.size
    return request


def _entry(index: int, message: OutboundMessage, fifo: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "Id": str(index),
        "Message": message.body,
        "MessageAttributes": message.attributes,
    }
    if fifo:
        entry["MessageGroupId"] = fifo_id(message.group)
        entry["MessageDeduplicationId"] = message.dedup_id
    return entry


def publish_ordered(sns: Any, topic_arn: str, messages: Sequence[OutboundMessage]) -> PublishResult:
    """Publish in order, in batches of up to 10; never overtake a failed message's group.

    A request refused as a whole for a reason retrying cannot fix (one entry may spoil it)
    is sent again entry by entry, so the refusal lands on the entry that caused it alone.
    """
    fifo = topic_arn.endswith(".fifo")
    result = PublishResult()
    blocked_groups: set[str] = set()
    alone: set[int] = set()  # ids of messages to send in a request of their own
    started = time.perf_counter()
    pending = list(messages)
    while pending:
        sendable = []
        for message in pending:
            if message.group in blocked_groups:
                result.failed[message.key] = SKIPPED
            else:
                sendable.append(message)
        if not sendable:
            break
        if id(sendable[0]) in alone:
            chunk = sendable[:1]
        else:
            chunk = next_request([m for m in sendable if id(m) not in alone], one_per_group=fifo)
        taken = {id(message) for message in chunk}
        pending = [message for message in sendable if id(message) not in taken]
        result.requests += 1
        try:
            response = sns.publish_batch(
                TopicArn=topic_arn,
                PublishBatchRequestEntries=[_entry(i, m, fifo) for i, m in enumerate(chunk)],
            )
        except AwsFailure as error:
            code = error_code(error)
            if not is_retryable(error) and len(chunk) > 1:
                alone.update(taken)
                pending = [*chunk, *pending]
                continue
            for message in chunk:
                result.failed[message.key] = code
                if not is_retryable(error):
                    result.refused[message.key] = code
                blocked_groups.add(message.group)
            continue
        failed_ids = {f["Id"]: f.get("Code", "Failed") for f in response.get("Failed", [])}
        # A per-entry failure inside one request cannot be undone for the entries SNS
        # accepted; FIFO requests hold one entry per interaction, so none overtakes it there.
        for index, message in enumerate(chunk):
            entry_code = failed_ids.get(str(index))
            if entry_code is None:
                result.published.add(message.key)
            else:
                result.failed[message.key] = entry_code
                if entry_code in NON_RETRYABLE_CODES:
                    result.refused[message.key] = entry_code
                blocked_groups.add(message.group)
    result.seconds = time.perf_counter() - started
    return result


def fan_out(
    sns: Any,
    topics: Mapping[str, str],
    messages_for: Callable[[str], Sequence[OutboundMessage]],
    executor: ThreadPoolExecutor,
) -> dict[str, PublishResult]:
    """Publish to every consumer topic concurrently; results per consumer."""
    futures = {
        consumer: executor.submit(publish_ordered, sns, arn, messages_for(consumer))
        for consumer, arn in topics.items()
    }
    return {consumer: future.result() for consumer, future in futures.items()}

"""DynamoDB persistence of interaction records and dedup lookups: the only module that
reads or writes the ledger table and the events table's dedup side.

Requests per batch: one BatchGetItem (interaction records + dedup records together), one
conditional PutItem per interaction (claims + lease), and one BatchWriteItem that stores the
delivered events and releases the leases. Attribute names are short: write units are billed
per kilobyte of item.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.ingest.claims import InflightClaim, InteractionRecord
from chalicelib.ingest.ordering import HighWaterMark
from chalicelib.store.layout import event_key

T = TypeVar("T")

MAX_GET_KEYS = 100
MAX_WRITE_ITEMS = 25
MAX_ATTEMPTS = 6


class LedgerError(Exception):
    """DynamoDB did not take a read or write after retries; the records are retried."""


@dataclass(frozen=True)
class ClaimRefused:
    """The interaction record changed since it was read (another invocation holds it)."""

    interaction_id: str
    holder: str | None


def encode_record(record: InteractionRecord, expires_at: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": record.interaction_id},
        "v": {"N": str(record.version)},
        "lu": {"N": str(record.lease_until_ms)},
        "inf": {"M": {key: _encode_claim(c) for key, c in record.inflight.items()}},
        "expires_at": {"N": str(expires_at)},
    }
    if record.lease_owner is not None:
        item["lo"] = {"S": record.lease_owner}
    if record.hwm.sequence is not None:
        item["hs"] = {"N": str(record.hwm.sequence[0])}
        item["hsi"] = {"S": record.hwm.sequence[1]}
    if record.hwm.time is not None:
        item["ht"] = {"S": record.hwm.time[0]}
        item["hti"] = {"S": record.hwm.time[1]}
    if record.hwm.unsequenced:
        item["hu"] = {"BOOL": True}
    return item


def _encode_claim(claim: InflightClaim) -> dict[str, Any]:
    value: dict[str, Any] = {
        "e": {"S": claim.event_id},
        "o": {"S": claim.occurred_at},
        "l": {"BOOL": claim.late},
        "r": {"S": claim.received_at},
        "c": {"N": str(claim.claimed_at_ms)},
        "d": {"L": [{"S": consumer} for consumer in sorted(claim.delivered)]},
    }
    if claim.sequence is not None:
        value["s"] = {"N": str(claim.sequence)}
    if claim.order_rank is not None:
        value["k"] = {"N": str(claim.order_rank)}
    if claim.payload_sha256 is not None:
        value["f"] = {"S": claim.payload_sha256}
    return {"M": value}


def decode_record(interaction_id: str, item: dict[str, Any] | None) -> InteractionRecord:
    if not item:
        return InteractionRecord(interaction_id)
    hwm = HighWaterMark(
        sequence=(int(item["hs"]["N"]), item["hsi"]["S"]) if "hs" in item else None,
        time=(item["ht"]["S"], item["hti"]["S"]) if "ht" in item else None,
        # Records written before the flag existed: a time mark without a sequence mark was
        # left by unsequenced events only.
        unsequenced=item["hu"]["BOOL"] if "hu" in item else ("ht" in item and "hs" not in item),
    )
    inflight = {
        key: _decode_claim(key, value["M"])
        for key, value in item.get("inf", {"M": {}})["M"].items()
    }
    return InteractionRecord(
        interaction_id=interaction_id,
        version=int(item["v"]["N"]),
        lease_owner=item.get("lo", {}).get("S"),
        lease_until_ms=int(item["lu"]["N"]),
        hwm=hwm,
        inflight=inflight,
    )


def _decode_claim(key: str, value: dict[str, Any]) -> InflightClaim:
    return InflightClaim(
        dedup_key=key,
        event_id=value["e"]["S"],
        sequence=int(value["s"]["N"]) if "s" in value else None,
        occurred_at=value["o"]["S"],
        late=value["l"]["BOOL"],
        received_at=value["r"]["S"],
        claimed_at_ms=int(value["c"]["N"]),
        delivered=frozenset(v["S"] for v in value["d"]["L"]),
        order_rank=int(value["k"]["N"]) if "k" in value else None,
        payload_sha256=value["f"]["S"] if "f" in value else None,
    )


def _backoff(attempt: int) -> None:
    time.sleep(min(1.0, 0.025 * 2**attempt) * (0.5 + random.random() / 2))


def _chunked(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class Ledger:
    dynamodb: Any
    ledger_table: str
    events_table: str

    def read(
        self, interaction_ids: Iterable[str], event_keys: Iterable[tuple[str, str]]
    ) -> tuple[dict[str, InteractionRecord], dict[tuple[str, str], str]]:
        """Interaction records and the fingerprints of already-stored (delivered) events.

        Strongly consistent: a claim decided on a stale read would be refused anyway, but
        a stale dedup miss would re-deliver.
        """
        requests = [(self.ledger_table, {"pk": {"S": i}}) for i in dict.fromkeys(interaction_ids)]
        requests += [(self.events_table, event_key(i, k)) for i, k in dict.fromkeys(event_keys)]
        records: dict[str, InteractionRecord] = {}
        stored: dict[tuple[str, str], str] = {}
        for chunk in _chunked(requests, MAX_GET_KEYS):
            for table, item in self._batch_get(chunk):
                if table == self.ledger_table:
                    records[item["pk"]["S"]] = decode_record(item["pk"]["S"], item)
                else:
                    dedup_key = item["sk"]["S"].removeprefix("E#")
                    stored[(item["pk"]["S"], dedup_key)] = item["sha"]["S"]
        return records, stored

    def _batch_get(self, keys: Sequence[tuple[str, dict]]) -> list[tuple[str, dict]]:
        request: dict[str, Any] = {}
        for table, key in keys:
            entry = request.setdefault(table, {"Keys": [], "ConsistentRead": True})
            entry["Keys"].append(key)
        if self.events_table in request:
            request[self.events_table]["ProjectionExpression"] = "pk, sk, sha"
        found: list[tuple[str, dict]] = []
        for attempt in range(MAX_ATTEMPTS):
            try:
                response = self.dynamodb.batch_get_item(RequestItems=request)
            except (ClientError, BotoCoreError) as error:
                raise LedgerError(f"reading the ledger failed: {_code(error)}") from error
            for table, items in response.get("Responses", {}).items():
                found += [(table, item) for item in items]
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return found
            _backoff(attempt)
        raise LedgerError("reading the ledger: keys still unprocessed after retries")

    def claim(
        self, expected_version: int, record: InteractionRecord, expires_at: int
    ) -> ClaimRefused | None:
        """Write the claimed record if nobody changed it since `expected_version` was read."""
        try:
            self.dynamodb.put_item(
                TableName=self.ledger_table,
                Item=encode_record(record, expires_at),
                ConditionExpression="attribute_not_exists(pk) OR v = :v",
                ExpressionAttributeValues={":v": {"N": str(expected_version)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except (ClientError, BotoCoreError) as error:
            if _code(error) == "ConditionalCheckFailedException":
                holder = error.response.get("Item", {}).get("lo", {}).get("S")
                return ClaimRefused(record.interaction_id, holder)
            raise LedgerError(f"claiming {record.interaction_id} failed: {_code(error)}") from error
        return None

    def settle(self, writes: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Store delivered events (and their index entries), then release leases, as
        (table, item) puts in BatchWriteItem calls; interaction records go last.

        Plain puts: the lease (longer than the function timeout) guarantees that no other
        invocation has written these interaction records since our claim.
        """
        # BatchWriteItem applies a request's items independently (UnprocessedItems), so the
        # interaction records go in requests of their own, once everything else has landed: a
        # reader between the two would see an event out of flight but not stored, and claim it
        # again (a second delivery, `late` decided anew). Records are written only while
        # something stays in flight, so the happy path still takes one request.
        stored = [write for write in writes if write[0] != self.ledger_table]
        records = [write for write in writes if write[0] == self.ledger_table]
        for group in (stored, records):
            for chunk in _chunked(group, MAX_WRITE_ITEMS):
                request: dict[str, list] = {}
                for table, item in chunk:
                    request.setdefault(table, []).append({"PutRequest": {"Item": item}})
                self._batch_write(request)

    def _batch_write(self, request: dict[str, list]) -> None:
        for attempt in range(MAX_ATTEMPTS):
            try:
                response = self.dynamodb.batch_write_item(RequestItems=request)
            except (ClientError, BotoCoreError) as error:
                if attempt == MAX_ATTEMPTS - 1:
                    raise LedgerError(f"writing the ledger failed: {_code(error)}") from error
                _backoff(attempt)
                continue
            request = response.get("UnprocessedItems") or {}
            if not request:
                return
            _backoff(attempt)
        raise LedgerError("writing the ledger: items still unprocessed after retries")


def _code(error: ClientError | BotoCoreError) -> str:
    # A BotoCoreError (connection lost, read timeout once botocore's retries ran out) is a
    # failed request like any other: the records are retried, never the whole invocation.
    if isinstance(error, BotoCoreError):
        return type(error).__name__
    return error.response.get("Error", {}).get("Code", "Unknown")

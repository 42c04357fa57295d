"""DynamoDB persistence of interaction records and dedup lookups: the only module that
reads or writes the ledger table and the events table's dedup side.

Requests per batch: one BatchGetItem (interaction records, arrival marks and dedup records
together), one conditional PutItem per interaction (claims + lease), one conditional PutItem
per interaction with records that could not be claimed (their arrival marks), and
BatchWriteItem requests that store the delivered events and release the leases. Attribute
names are short: write units are billed per kilobyte of item.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chalicelib.aws import (
    MAX_BATCH_GET_KEYS,
    MAX_BATCH_WRITE_ITEMS,
    AwsFailure,
    batch_get,
    batch_write,
    chunked,
    error_code,
    is_retryable,
)
from chalicelib.errors import DependencyUnavailable
from chalicelib.ingest.claims import ArrivalMark, Arrivals, InflightClaim, InteractionRecord
from chalicelib.ingest.ordering import HighWaterMark
from chalicelib.store.layout import event_key

CONDITION_FAILED = "ConditionalCheckFailedException"
# A claim is tried twice: the second try tells a first write whose answer was lost (it landed)
# from one that did not.
CLAIM_ATTEMPTS = 2


class LedgerError(DependencyUnavailable):
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


# An interaction's arrival marks live in one item of the events table beside its events
# (its own sort key, outside the "E#" range that timelines query): taken without the lease,
# they must not share an item with the interaction record, which the lease holder overwrites.
ARRIVALS_SORT_KEY = "A#"


def arrivals_key(interaction_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": interaction_id}, "sk": {"S": ARRIVALS_SORT_KEY}}


def encode_arrivals(
    interaction_id: str, version: int, marks: Mapping[str, ArrivalMark], expires_at: int
) -> dict[str, Any]:
    encoded: dict[str, Any] = {}
    for key, mark in marks.items():
        value: dict[str, Any] = {
            "e": {"S": mark.event_id},
            "o": {"S": mark.occurred_at},
            "c": {"N": str(mark.marked_at_ms)},
        }
        if mark.sequence is not None:
            value["s"] = {"N": str(mark.sequence)}
        if mark.order_rank is not None:
            value["k"] = {"N": str(mark.order_rank)}
        encoded[key] = {"M": value}
    return {
        **arrivals_key(interaction_id),
        "v": {"N": str(version)},
        "am": {"M": encoded},
        "expires_at": {"N": str(expires_at)},
    }


def decode_arrivals(item: Mapping[str, Any]) -> Arrivals:
    marks = {
        key: ArrivalMark(
            dedup_key=key,
            event_id=value["M"]["e"]["S"],
            sequence=int(value["M"]["s"]["N"]) if "s" in value["M"] else None,
            occurred_at=value["M"]["o"]["S"],
            marked_at_ms=int(value["M"]["c"]["N"]),
            order_rank=int(value["M"]["k"]["N"]) if "k" in value["M"] else None,
        )
        for key, value in item.get("am", {"M": {}})["M"].items()
    }
    return Arrivals(version=int(item["v"]["N"]), marks=marks)


@dataclass
class LedgerView:
    """What one read of the ledger found."""

    records: dict[str, InteractionRecord] = field(default_factory=dict)
    arrivals: dict[str, Arrivals] = field(default_factory=dict)
    stored: dict[tuple[str, str], str] = field(default_factory=dict)  # key -> fingerprint


@dataclass
class Ledger:
    dynamodb: Any
    ledger_table: str
    events_table: str

    def read(
        self, interaction_ids: Iterable[str], event_keys: Iterable[tuple[str, str]]
    ) -> LedgerView:
        """Interaction records, their arrival marks, and the fingerprints of already-stored
        (delivered) events, in one BatchGetItem (per 100 keys).

        Strongly consistent: a claim decided on a stale read would be refused anyway, but
        a stale dedup miss would re-deliver.
        """
        ids = list(dict.fromkeys(interaction_ids))
        requests = [(self.ledger_table, {"pk": {"S": i}}) for i in ids]
        requests += [(self.events_table, arrivals_key(i)) for i in ids]
        requests += [(self.events_table, event_key(i, k)) for i, k in dict.fromkeys(event_keys)]
        view = LedgerView()
        for chunk in chunked(requests, MAX_BATCH_GET_KEYS):
            for table, item in self._batch_get(chunk):
                interaction_id = item["pk"]["S"]
                if table == self.ledger_table:
                    view.records[interaction_id] = decode_record(interaction_id, item)
                elif item["sk"]["S"] == ARRIVALS_SORT_KEY:
                    view.arrivals[interaction_id] = decode_arrivals(item)
                else:
                    dedup_key = item["sk"]["S"].removeprefix("E#")
                    view.stored[(interaction_id, dedup_key)] = item["sha"]["S"]
        return view

    def mark_arrivals(
        self,
        interaction_id: str,
        read: Arrivals,
        marks: Mapping[str, ArrivalMark],
        expires_at: int,
    ) -> bool:
        """Write the interaction's arrival marks if nobody changed them since `read`; False
        when somebody did (the records stay failed and mark themselves on their next try)."""
        try:
            self.dynamodb.put_item(
                TableName=self.events_table,
                Item=encode_arrivals(interaction_id, read.version + 1, marks, expires_at),
                ConditionExpression="attribute_not_exists(pk) OR v = :v",
                ExpressionAttributeValues={":v": {"N": str(read.version)}},
            )
        except AwsFailure as error:
            if error_code(error) == CONDITION_FAILED:
                return False
            raise LedgerError(
                f"marking arrivals of {interaction_id} failed: {error_code(error)}"
            ) from error
        return True

    def _batch_get(
        self, keys: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[tuple[str, dict[str, Any]]]:
        request: dict[str, dict[str, Any]] = {}
        for table, key in keys:
            entry = request.setdefault(table, {"Keys": [], "ConsistentRead": True})
            entry["Keys"].append(key)
        if self.events_table in request:
            request[self.events_table]["ProjectionExpression"] = "pk, sk, sha, v, am"
        found = batch_get(self.dynamodb, request, "reading the ledger")
        return [(table, item) for table, items in found.items() for item in items]

    def claim(
        self, expected_version: int, record: InteractionRecord, expires_at: int
    ) -> ClaimRefused | None:
        """Write the claimed record if nobody changed it since `expected_version` was read.

        A write whose answer was lost (a timeout once it had landed) is tried once more; that
        try is refused, and the record it returns (ALL_OLD) carries our own lease and version:
        the claim is ours, not someone else's, and the interaction does not stall for a lease.
        """
        for attempt in range(CLAIM_ATTEMPTS):
            try:
                self.dynamodb.put_item(
                    TableName=self.ledger_table,
                    Item=encode_record(record, expires_at),
                    ConditionExpression="attribute_not_exists(pk) OR v = :v",
                    ExpressionAttributeValues={":v": {"N": str(expected_version)}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return None
            except AwsFailure as error:
                if error_code(error) == CONDITION_FAILED:
                    old = getattr(error, "response", {}).get("Item", {})
                    holder = old.get("lo", {}).get("S")
                    if holder == record.lease_owner and old.get("v", {}).get("N") == str(
                        record.version
                    ):
                        return None  # our own earlier try landed
                    return ClaimRefused(record.interaction_id, holder)
                if not is_retryable(error) or attempt == CLAIM_ATTEMPTS - 1:
                    raise LedgerError(
                        f"claiming {record.interaction_id} failed: {error_code(error)}"
                    ) from error
        raise AssertionError("unreachable: the last attempt returns or raises")

    def settle(self, writes: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Write (table, item) puts in BatchWriteItem requests, in three waves: time-index
        entries, then event items, then interaction records.

        BatchWriteItem applies a request's items independently (UnprocessedItems), so each
        wave starts once the one before has landed: an event item stored without its index
        entry would be in no replay window for good (its dedup record stops a retry from
        storing it again), and an interaction record released before its events are stored
        would let a reader claim them again (a second delivery, `late` decided anew). Records
        are written only while something stays in flight, so the happy path takes two requests.

        Plain puts: the lease (longer than the function timeout) guarantees that no other
        invocation has written these interaction records since our claim.
        """
        waves: dict[str, list[tuple[str, dict[str, Any]]]] = {
            "index": [],
            "events": [],
            "records": [],
        }
        for table, item in writes:
            wave = (
                "records"
                if table == self.ledger_table
                else "events"
                if table == self.events_table
                else "index"
            )
            waves[wave].append((table, item))
        for group in waves.values():
            for chunk in chunked(group, MAX_BATCH_WRITE_ITEMS):
                request: dict[str, list[dict[str, Any]]] = {}
                for table, item in chunk:
                    request.setdefault(table, []).append({"PutRequest": {"Item": item}})
                batch_write(self.dynamodb, request, "writing the ledger")

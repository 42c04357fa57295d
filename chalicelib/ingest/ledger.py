"""DynamoDB persistence of interaction records and dedup lookups: the only module that
reads or writes the ledger table and the events table's dedup side.

Requests per batch: one UpdateItem per interaction that marks its events' arrival and reads the
record back, then one BatchGetItem (which of those events, claims and marks are stored), one
conditional PutItem per interaction (claims + lease), and BatchWriteItem requests that store the
delivered events; an interaction record is written again only when something stays in flight.
Attribute names are short: write units are billed per kilobyte of item.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chalicelib.aws import (
    BATCH_ATTEMPTS,
    MAX_BATCH_GET_KEYS,
    MAX_BATCH_WRITE_ITEMS,
    AwsFailure,
    batch_get,
    batch_write,
    chunked,
    error_code,
    is_retryable,
    sleep_before_retry,
)
from chalicelib.errors import DependencyUnavailable
from chalicelib.ingest.claims import ArrivalMark, InflightClaim, InteractionRecord
from chalicelib.ingest.ordering import HighWaterMark
from chalicelib.store.layout import event_key

CONDITION_FAILED = "ConditionalCheckFailedException"
# A claim may create the record (nobody marked it yet); a release only replaces our own.
CLAIM_CONDITION = "attribute_not_exists(pk) OR v = :v"
RELEASE_CONDITION = "v = :v"
# A claim is tried twice: the second try tells a first write whose answer was lost (it landed)
# from one that did not.
CLAIM_ATTEMPTS = 2


class LedgerError(DependencyUnavailable):
    """DynamoDB did not take a read or write after retries; the records are retried."""


@dataclass(frozen=True)
class ClaimRefused:
    """The interaction record changed since it was read (another invocation claimed or marked
    arrivals); `current` is the record as it is now, when DynamoDB returned it."""

    interaction_id: str
    holder: str | None
    current: InteractionRecord | None = None


# Arrival marks are top-level attributes of the interaction record, one per event ("a#" + its
# dedup key): an update can then add one without reading the record (if_not_exists keeps the
# first copy's), which a nested map cannot do on a record that does not exist yet.
MARK_PREFIX = "a#"


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
    for key, mark in record.marks.items():
        item[MARK_PREFIX + key] = encode_mark(mark)
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


def encode_mark(mark: ArrivalMark) -> dict[str, Any]:
    value: dict[str, Any] = {
        "e": {"S": mark.event_id},
        "o": {"S": mark.occurred_at},
        "c": {"N": str(mark.marked_at_ms)},
    }
    if mark.sequence is not None:
        value["s"] = {"N": str(mark.sequence)}
    if mark.order_rank is not None:
        value["k"] = {"N": str(mark.order_rank)}
    return {"M": value}


def decode_record(interaction_id: str, item: Mapping[str, Any] | None) -> InteractionRecord:
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
    marks = {
        name.removeprefix(MARK_PREFIX): _decode_mark(name.removeprefix(MARK_PREFIX), value["M"])
        for name, value in item.items()
        if name.startswith(MARK_PREFIX)
    }
    # A record that only arrival marks have touched has no lease fields yet.
    return InteractionRecord(
        interaction_id=interaction_id,
        version=int(item["v"]["N"]),
        lease_owner=item.get("lo", {}).get("S"),
        lease_until_ms=int(item.get("lu", {"N": "0"})["N"]),
        hwm=hwm,
        inflight=inflight,
        marks=marks,
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


def _decode_mark(key: str, value: dict[str, Any]) -> ArrivalMark:
    return ArrivalMark(
        dedup_key=key,
        event_id=value["e"]["S"],
        sequence=int(value["s"]["N"]) if "s" in value else None,
        occurred_at=value["o"]["S"],
        marked_at_ms=int(value["c"]["N"]),
        order_rank=int(value["k"]["N"]) if "k" in value else None,
    )


def _refusal(error: BaseException, interaction_id: str) -> ClaimRefused | None:
    """The refusal a ConditionalCheckFailed carries (with the record as it is now, when
    ReturnValuesOnConditionCheckFailure gave it), or None for any other error."""
    if error_code(error) != CONDITION_FAILED:
        return None
    old = getattr(error, "response", {}).get("Item")
    current = decode_record(interaction_id, old) if old else None
    return ClaimRefused(interaction_id, old.get("lo", {}).get("S") if old else None, current)


@dataclass
class Ledger:
    dynamodb: Any
    ledger_table: str
    events_table: str

    def read_stored(self, event_keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The payload fingerprints of the events already stored (delivered), per (interaction
        id, dedup key). Strongly consistent: a stale dedup miss would re-deliver."""
        keys = [event_key(i, k) for i, k in dict.fromkeys(event_keys)]
        found = self._read(self.events_table, keys, "reading the ledger", "pk, sk, sha")
        return {
            (item["pk"]["S"], item["sk"]["S"].removeprefix("E#")): item["sha"]["S"]
            for item in found
        }

    def read_records(self, interaction_ids: Iterable[str]) -> dict[str, InteractionRecord]:
        """The interaction records as they are now (a record not there reads as a new one).
        Strongly consistent, like every read planned from: a stale record would miss the claims
        and marks that hold an event back."""
        ids = list(dict.fromkeys(interaction_ids))
        keys = [{"pk": {"S": interaction_id}} for interaction_id in ids]
        found = self._read(self.ledger_table, keys, "reading interaction records")
        items = {item["pk"]["S"]: item for item in found}
        return {i: decode_record(i, items.get(i)) for i in ids}

    def _read(
        self,
        table: str,
        keys: Sequence[dict[str, Any]],
        what: str,
        projection: str | None = None,
    ) -> list[dict[str, Any]]:
        """Strongly consistent reads of `keys`, one BatchGetItem per 100 keys."""
        found: list[dict[str, Any]] = []
        for chunk in chunked(keys, MAX_BATCH_GET_KEYS):
            spec: dict[str, Any] = {"Keys": chunk, "ConsistentRead": True}
            if projection is not None:
                spec["ProjectionExpression"] = projection
            found += batch_get(self.dynamodb, {table: spec}, what).get(table, [])
        return found

    def mark_arrivals(
        self, interaction_id: str, marks: Sequence[ArrivalMark], expires_at: int
    ) -> InteractionRecord:
        """Mark the arrival of `marks` on the interaction record (a mark already there is kept:
        the first copy's place) and return the record as it is after that.

        Unconditional, without the lease: it lands whoever holds the interaction, and it
        changes the record's version, so a concurrent claim decided without these events is
        refused and decided again with them. That is what makes the order FIFO-like: an event
        claimed after this write waits for the ones marked here.
        """
        names = {f"#a{n}": MARK_PREFIX + mark.dedup_key for n, mark in enumerate(marks)}
        values: dict[str, Any] = {f":a{n}": encode_mark(mark) for n, mark in enumerate(marks)}
        sets = [f"#a{n} = if_not_exists(#a{n}, :a{n})" for n in range(len(marks))]
        values |= {":one": {"N": "1"}, ":x": {"N": str(expires_at)}}
        try:
            response = self.dynamodb.update_item(
                TableName=self.ledger_table,
                Key={"pk": {"S": interaction_id}},
                UpdateExpression=f"SET {', '.join([*sets, 'expires_at = :x'])} ADD v :one",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except AwsFailure as error:
            raise LedgerError(
                f"marking arrivals of {interaction_id} failed: {error_code(error)}"
            ) from error
        return decode_record(interaction_id, response["Attributes"])

    def claim(
        self, expected_version: int, record: InteractionRecord, expires_at: int
    ) -> ClaimRefused | None:
        """Write the claimed record if nobody changed it since `expected_version` was read.

        A write whose answer was lost (a timeout once it had landed) is tried once more; that
        try is refused, and the record it returns (ALL_OLD) carries our own lease: the claim is
        ours, not someone else's, and the interaction does not stall for a lease. (Arrival
        marks may have changed its version since; the lease is ours alone.)
        """
        for attempt in range(CLAIM_ATTEMPTS):
            try:
                self._put_record(record, expires_at, CLAIM_CONDITION, expected_version)
                return None
            except AwsFailure as error:
                refused = _refusal(error, record.interaction_id)
                if refused is not None:
                    current = refused.current
                    if (
                        current is not None
                        and current.lease_owner == record.lease_owner
                        and current.lease_until_ms == record.lease_until_ms
                        and current.inflight.keys() >= record.inflight.keys()
                    ):
                        return None  # our own earlier try landed
                    return refused
                if not is_retryable(error) or attempt == CLAIM_ATTEMPTS - 1:
                    raise LedgerError(
                        f"claiming {record.interaction_id} failed: {error_code(error)}"
                    ) from error
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _put_record(
        self, record: InteractionRecord, expires_at: int, condition: str, expected_version: int
    ) -> None:
        """Put the record if its version is still `expected_version`; a refusal returns the
        record as it is (ALL_OLD)."""
        self.dynamodb.put_item(
            TableName=self.ledger_table,
            Item=encode_record(record, expires_at),
            ConditionExpression=condition,
            ExpressionAttributeValues={":v": {"N": str(expected_version)}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    def store(
        self,
        index_items: Sequence[tuple[str, dict[str, Any]]],
        event_items: Sequence[tuple[str, dict[str, Any]]],
    ) -> None:
        """Write time-index entries, then event items, in BatchWriteItem requests.

        BatchWriteItem applies a request's items independently (UnprocessedItems), so the
        events start once every index entry has landed: an event item stored without its index
        entry would be in no replay window for good (its dedup record stops a retry from
        storing it again); an entry without its event is harmless (readers skip it).
        """
        for wave in (index_items, event_items):
            for chunk in chunked(wave, MAX_BATCH_WRITE_ITEMS):
                request: dict[str, list[dict[str, Any]]] = {}
                for table, item in chunk:
                    request.setdefault(table, []).append({"PutRequest": {"Item": item}})
                batch_write(self.dynamodb, request, "writing the ledger")

    def release(
        self, owner: str, claimed_version: int, record: InteractionRecord, expires_at: int
    ) -> None:
        """Write the settled record (lease released, what stays in flight) once the events are
        stored: released before them, a reader could claim them again (a second delivery,
        `late` decided anew).

        Conditional on the version we claimed at: arrival marks added since (they change the
        version) are kept, merged into what we write, and the write is tried again. A record
        leased by someone else by then (our lease ran out) is theirs: not overwritten.
        """
        expected = claimed_version
        for attempt in range(BATCH_ATTEMPTS):
            try:
                self._put_record(record, expires_at, RELEASE_CONDITION, expected)
                return
            except AwsFailure as error:
                refused = _refusal(error, record.interaction_id)
                if refused is None:
                    if not is_retryable(error) or attempt == BATCH_ATTEMPTS - 1:
                        raise LedgerError(
                            f"releasing {record.interaction_id} failed: {error_code(error)}"
                        ) from error
                    sleep_before_retry(attempt)
                    continue
                current = refused.current
                if current is None or current.lease_owner != owner:
                    return  # taken over: the taker resumes what we left in flight
                marks = {
                    **current.marks,
                    **{k: m for k, m in record.marks.items() if k not in current.marks},
                }
                kept = {k: m for k, m in marks.items() if k not in record.inflight}
                record = replace(record, version=current.version + 1, marks=kept)
                expected = current.version
        raise LedgerError(f"releasing {record.interaction_id} failed: marks kept changing")

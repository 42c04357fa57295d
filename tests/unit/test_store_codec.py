"""Stored messages: compressed with a preset dictionary, and every earlier encoding readable."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks.accounting import item_size, write_units
from benchmarks.harness import relay_settings
from benchmarks.traffic_mix import realistic_events
from chalicelib.model import InvalidEvent, delivered_message
from chalicelib.providers.validation import validate_record
from chalicelib.store import layout

NOW = datetime(2026, 11, 29, 9, 0, 5, tzinfo=UTC)
RECEIVED_AT = "2026-11-30T09:00:00.000Z"
STORE = Path(layout.__file__).resolve().parent
# zlib's id (Adler-32) of message-dictionary-1.txt: items in tables name it, so it is frozen.
DICTIONARY_1_ID = 3054587530


def _message(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": "eb-1",
        "interaction_id": "int-1",
        "participant_id": None,
        "detail_type": "Interaction.Lifecycle.StageChanged",
        "stage": "Connected",
        "state": None,
        "sequence": 3,
        "occurred_at": "2026-11-29T09:00:01.250Z",
        "received_at": "2026-11-29T09:00:02.000Z",
        "late": False,
        "replay": False,
        "replay_job_id": None,
        "source": "com.nice.cxone.interactions",
        "event": {"id": "eb-1", "detail": {"interaction.id": "int-1", "note": "é" * 40}},
        **overrides,
    }


def _item(message: dict[str, Any]) -> dict[str, Any]:
    return layout.event_item(
        message, dedup_key="eb-1", payload_sha256="0" * 64, retention_days=30, now=NOW
    )


def _rest_json(message: dict[str, Any]) -> bytes:
    rest = {k: v for k, v in message.items() if k not in layout._FIELDS_IN_KEYS}
    return json.dumps(rest, separators=(",", ":"), ensure_ascii=False).encode()


def test_the_dictionaries_in_use_are_unchanged_and_present() -> None:
    first = (STORE / layout.MESSAGE_DICTIONARIES[0]).read_bytes()
    assert zlib.adler32(first) == DICTIONARY_1_ID
    ids = [zlib.adler32((STORE / name).read_bytes()) for name in layout.MESSAGE_DICTIONARIES]
    assert len(set(ids)) == len(ids)


def test_a_new_item_names_the_newest_dictionary_and_reads_back() -> None:
    original = _message()
    item = _item(original)
    blob = item["m"]["B"]
    newest = (STORE / layout.MESSAGE_DICTIONARIES[-1]).read_bytes()
    assert blob[1] & 0x20 and int.from_bytes(blob[2:6], "big") == zlib.adler32(newest)
    assert layout.decode_message(item) == original


@pytest.mark.parametrize(
    "encode",
    [lambda raw: zlib.compress(raw, 9), lambda raw: raw],
    ids=["zlib without a dictionary (earlier compact items)", "plain JSON"],
)
def test_compact_items_written_without_a_dictionary_stay_readable(encode: Any) -> None:
    original = _message()
    item = {**_item(original), "m": {"B": encode(_rest_json(original))}}
    assert layout.decode_message(item) == original


@pytest.mark.parametrize("compressed", [True, False], ids=["msg zlib", "msg plain JSON"])
def test_items_of_the_first_layout_stay_readable(compressed: bool) -> None:
    original = _message()
    raw = json.dumps(original).encode()
    item = {
        "pk": {"S": "int-1"},
        "sk": {"S": "E#eb-1"},
        "time_sort": {"S": layout.time_sort(original)},
        "msg": {"B": zlib.compress(raw, 6) if compressed else raw},
    }
    assert layout.decode_message(item) == original


def test_a_blob_naming_an_unknown_dictionary_is_an_error_not_a_wrong_message() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zdict=b"some other dictionary")
    blob = compressor.compress(_rest_json(_message())) + compressor.flush()
    with pytest.raises(zlib.error):
        layout.plain_blob(blob)


def test_the_dictionary_saves_write_units_on_realistic_payloads() -> None:
    """The reason it exists: on the realistic mix's events (Genesys transcriptions of 1.5-10
    KB, conversation events, Amazon Connect, CXone) the events items need at most 85 % of the
    write units plain zlib needs."""
    settings = relay_settings("codec")
    events, _ = realistic_events(150, seed=5, connect=True)
    with_dictionary = without = 0
    for event in events:
        canonical = validate_record(json.dumps(event), settings)
        assert not isinstance(canonical, InvalidEvent)
        item = _item(delivered_message(canonical, received_at=RECEIVED_AT, late=False))
        with_dictionary += write_units(item_size(item))
        plain_zlib = zlib.compress(layout.plain_blob(item["m"]["B"]), layout.ZLIB_LEVEL)
        without += write_units(item_size({**item, "m": {"B": plain_zlib}}))
    assert with_dictionary <= 0.85 * without

"""Build a preset zlib dictionary for stored messages from the captured provider shapes.

    python -m benchmarks.message_dictionary --out chalicelib/store/message-dictionary-N.txt

A stored message (chalicelib/store/layout.py) is compressed with the dictionary whose zlib
id (Adler-32) is named in its stream, so a dictionary once used must never change: a new one
is a new file, added to `layout.MESSAGE_DICTIONARIES`, while the older ones stay readable.
The dictionary is the compact JSON of the delivered message (without the fields the item's
keys hold) of one fixture of each shape, joined: field names, provider constants and the
structure of each provider's events. zlib prefers the end of a dictionary (shorter
distances), so the shapes that make up most traffic come last.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from chalicelib.config import load_settings
from chalicelib.model import InvalidEvent, delivered_message
from chalicelib.providers.validation import validate_record

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
# Least frequent first; zlib keeps the last 32 KB of a dictionary.
SHAPES = (
    "cxone/routing-state-changed.json",
    "cxone/stage-changed.json",
    "connect/voice.queued.json",
    "connect/voice.completed.json",
    "genesys/users.routingStatus.json",
    "genesys/conversation.flow.outcome.json",
    "genesys/conversation.acd.start.json",
    "genesys/conversation.acd.end.json",
    "genesys/conversation.user.start.json",
    "genesys/conversation.user.end.json",
    "genesys/conversation.acw.json",
    "genesys/conversation.customer.end.json",
    "genesys/conversations.transcription.json",
)
MAX_DICTIONARY_BYTES = 32 * 1024
# The delivered message's fields an events item keeps in its keys, not in the blob.
FIELDS_IN_KEYS = ("interaction_id", "occurred_at", "sequence", "event_id")


def build(shapes: Sequence[str] = SHAPES) -> bytes:
    settings = load_settings(
        {"RELAY_APP": "dictionary", "RELAY_STAGE": "dev", "AWS_REGION": "us-east-1"}
    )
    parts = []
    for name in shapes:
        event = validate_record((FIXTURES / name).read_text(), settings)
        if isinstance(event, InvalidEvent):
            raise ValueError(f"{name} is not a valid event: {event.errors}")
        message = delivered_message(event, received_at="2026-01-01T00:00:00.000Z", late=False)
        rest = {k: v for k, v in message.items() if k not in FIELDS_IN_KEYS}
        parts.append(json.dumps(rest, separators=(",", ":"), ensure_ascii=False).encode())
    return b"".join(parts)[-MAX_DICTIONARY_BYTES:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.message_dictionary")
    parser.add_argument("--out", type=Path, required=True, help="a new dictionary file")
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists: a dictionary in use never changes")
    args.out.write_bytes(build())
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

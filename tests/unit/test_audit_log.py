"""The audit trail's lines: one compact JSON object per decision, with the ids."""

from __future__ import annotations

import io
import json

from chalicelib.telemetry import audit, audit_fields, logger


def test_audit_line_is_compact_and_keeps_every_id() -> None:
    stream = io.StringIO()
    handler = logger.registered_handler
    previous = handler.setStream(stream)
    try:
        audit("delivered", event_id="e-1", interaction_id="int-1", dedup_key="e-1", late=False)
        audit("duplicate", event_id="e-2", interaction_id="int-1", dedup_key="p-9", conflict=True)
        audit("quarantined", message_id="m-1", reason="invalid", fields=["stage"])
        logger.warning("an operational line", extra={"consumer": "crm-updater"})
    finally:
        handler.setStream(previous)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[:3] == [
        {"audit": "delivered", "e": "e-1", "i": "int-1"},
        {"audit": "duplicate", "e": "e-2", "i": "int-1", "k": "p-9", "conflict": True},
        {"audit": "quarantined", "m": "m-1", "reason": "invalid", "fields": ["stage"]},
    ]
    # Operational lines keep Powertools' full format.
    assert {"level", "location", "timestamp", "service"} <= set(lines[3])
    assert lines[3]["consumer"] == "crm-updater"


def test_a_late_event_says_so_and_only_empty_fields_are_left_out() -> None:
    fields = audit_fields("delivered", event_id="e", interaction_id="i", late=True, note=None)
    assert fields == {"audit": "delivered", "e": "e", "i": "i", "late": True}

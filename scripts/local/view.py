"""What the local stack shows while it runs and when it stops: pure rows over a status snapshot.

The same rows feed the live table (a terminal), the periodic plain progress lines (a pipe or a
file: `make run | tee run.log`), the summary and the console's live counters. Retries are split
by the reason the pipeline reported them (`Retried:<reason>` tallies), because most retries of
a healthy relay are ordering waits and lease contention, not errors.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

# The pipeline's failure reasons, grouped into what an operator acts on.
RETRY_GROUPS: dict[str, tuple[str, ...]] = {
    "ordering wait": ("older_event_pending", "waiting"),
    "lease busy": ("interaction_busy", "claim_refused"),
    "dependency failure": ("ledger", "publish_failed", "quarantine_publish_failed"),
    "deadline": ("deadline",),
}
RETRIED_PREFIX = "Retried:"


def retries_by_group(tally: Mapping[str, int]) -> dict[str, int]:
    """Retried records per operator-facing group; reasons outside every group are "other"."""
    groups = dict.fromkeys(RETRY_GROUPS, 0)
    groups["other"] = 0
    by_reason = {
        name.removeprefix(RETRIED_PREFIX): count
        for name, count in tally.items()
        if name.startswith(RETRIED_PREFIX)
    }
    for reason, count in by_reason.items():
        group = next((g for g, reasons in RETRY_GROUPS.items() if reason in reasons), "other")
        groups[group] += count
    # A pipeline that reports only the total: the rest is shown as unattributed, not dropped.
    groups["other"] += max(0, tally.get("Retried", 0) - sum(by_reason.values()))
    return groups


def rows(status: Mapping[str, Any], consumers: list[str]) -> list[tuple[str, str]]:
    """(what, count) rows of the live view and the summary, in reading order."""
    tally: Mapping[str, int] = status.get("tally", {})
    sent = status.get("sent", {})
    queues = status.get("queues", {})
    table: list[tuple[str, str]] = []
    if "valid" in sent:
        table.append(
            (
                "sent (valid / duplicate / invalid)",
                " / ".join(str(sent[k]) for k in ("valid", "duplicate", "invalid")),
            )
        )
    elif sent:
        table.append(("events sent to the bus", str(sent.get("sent", 0))))
    if sent.get("send_failures"):
        table.append(("not sent (PutEvents failed)", str(sent["send_failures"])))
    table.append(("ingest backlog (waiting in the queue)", _depth(queues.get("ingest_backlog"))))
    table.append(("in flight (received, not yet settled)", _depth(queues.get("in_flight"))))
    table.append(("DLQ depth", _depth(queues.get("dlq_depth"))))
    table.append(("received by ingest (attempts)", str(tally.get("Received", 0))))
    delivered = status.get("delivered", {})
    for consumer in consumers:
        reached = tally.get(f"delivered:{consumer}", 0)
        seen = delivered.get(consumer)
        table.append(
            (
                f"delivered to {consumer}",
                f"{reached}" + (f" (consumer saw {seen})" if seen is not None else ""),
            )
        )
    table.append(("duplicates dropped", str(tally.get("Duplicates", 0))))
    table.append(("late events", str(tally.get("Late", 0))))
    table.append(("quarantined", str(tally.get("Quarantined", 0))))
    for group, count in retries_by_group(tally).items():
        if group in ("other", "deadline") and not count:
            continue
        table.append((f"retried: {group}", str(count)))
    latency = status.get("latency_ms") or {}
    if latency.get("p50") is not None:
        table.append(
            (
                "latency occurred -> consumer p50 / p95 / p99 (ms)",
                " / ".join(f"{latency[k]:.0f}" for k in ("p50", "p95", "p99")),
            )
        )
    table.append(("token refreshes", str(sum(status.get("token_refreshes", {}).values()))))
    return table


def _depth(value: int | None) -> str:
    return "?" if value is None else str(value)


def progress_line(status: Mapping[str, Any], consumers: list[str]) -> str:
    """One short plain line for a pipe or a log file: the same figures as the rows."""
    tally: Mapping[str, int] = status.get("tally", {})
    queues = status.get("queues", {})
    retries = retries_by_group(tally)
    delivered = "/".join(str(tally.get(f"delivered:{c}", 0)) for c in consumers)
    parts = [
        f"sent {status.get('sent', {}).get('sent', 0)}",
        f"backlog {_depth(queues.get('ingest_backlog'))}",
        f"in flight {_depth(queues.get('in_flight'))}",
        f"DLQ {_depth(queues.get('dlq_depth'))}",
        f"delivered {delivered}",
        f"duplicates {tally.get('Duplicates', 0)}",
        f"late {tally.get('Late', 0)}",
        f"quarantined {tally.get('Quarantined', 0)}",
        "retried: ordering {} lease {} dependency {}".format(
            retries["ordering wait"], retries["lease busy"], retries["dependency failure"]
        ),
    ]
    latency = status.get("latency_ms") or {}
    if latency.get("p50") is not None:
        parts.append(f"p50 {latency['p50']:.0f} ms")
    return f"[{status.get('elapsed_s', 0):>6.1f} s] " + " | ".join(parts)


class Output:
    """stdout that survives its reader going away (`make run | head`); a file for rich too.

    A write to a closed pipe raises BrokenPipeError once; from then on stdout points at
    /dev/null (so the interpreter's own flush at exit cannot fail again), writes are dropped
    and `closed` is set, which the stack takes as a request to stop.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.closed = False

    def write(self, text: str) -> int:
        if not self.closed:
            try:
                self.stream.write(text)
                self.stream.flush()
            except BrokenPipeError:
                self.reader_gone()
        return len(text)

    def write_line(self, text: str) -> None:
        self.write(text + "\n")

    def flush(self) -> None:
        if not self.closed:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self.reader_gone()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def reader_gone(self) -> None:
        self.closed = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self.stream.fileno())
        except (OSError, ValueError):  # not a real file (a test's StringIO)
            pass
        finally:
            os.close(devnull)

"""Markdown tables of a benchmark report, for the generated blocks of docs/benchmarks.md and
docs/scaling.md (so the documents state exactly what the last full run measured)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

SECONDS_PER_MONTH = 30 * 24 * 3600
SUSTAINED_RATES = (1_000, 10_000)
BATCH_EVENTS = 10  # the ingest function's batch size in the runs above


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _met(check: dict[str, Any]) -> str:
    return "yes" if check["met"] else "**no**"


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


SERVICES = ("dynamodb", "sns", "sqs", "lambda", "cloudwatch_logs", "eventbridge")
SERVICE_TITLES = ("DynamoDB", "SNS", "SQS", "Lambda", "CloudWatch Logs", "EventBridge")


def _mixes(report: dict[str, Any]) -> list[tuple[str, int, dict[str, dict[str, Any]]]]:
    mixes = [("small", report["events"], report["implementations"])]
    for name, mix in report.get("mixes", {}).items():
        mixes.append((name, mix["events"], mix["implementations"]))
    return mixes


def _traffic_line(report: dict[str, Any]) -> str:
    traffic = report.get("mixes", {}).get("realistic", {}).get("traffic")
    if not traffic:
        return ""
    kinds = ", ".join(
        f"{kind} {count} (mean {traffic['mean_body_bytes_by_kind'][kind]:,} bytes)"
        for kind, count in traffic["events_by_kind"].items()
    )
    return (
        f"The realistic mix held {traffic['items']:,} records: {kinds}; mean record "
        f"{traffic['mean_body_bytes']:,} bytes; {traffic['redeliveries']} EventBridge "
        f"re-deliveries, {traffic['provider_resends']} provider re-sends, "
        f"{traffic['reordered']} reordered."
    )


def mix_tables(mix: str, events: int, impls: dict[str, dict[str, Any]]) -> list[str]:
    """The per-implementation tables of one traffic mix."""
    return [
        f"### {mix.capitalize()} mix ({events:,} records per implementation)",
        "",
        markdown_table(
            (
                "implementation",
                "events/s",
                "requests/event",
                "DynamoDB WRU/event",
                "DynamoDB RRU/event",
                "SNS billable/event",
                "log bytes/event",
                "of which audit",
                "CPU ms/event",
                "USD per million events",
            ),
            [
                (
                    f"`{name}`",
                    f"{f['events_per_s']:.1f}",
                    f"{f['requests_per_event']['total']:.2f}",
                    f"{f['ddb_write_units_per_event']:.2f}",
                    f"{f['ddb_read_units_per_event']:.2f}",
                    f"{f['sns_billable_per_event']:.2f}",
                    f"{f['log_bytes_per_event']:.0f}",
                    f"{f.get('audit_log_bytes_per_event', 0):.0f}",
                    f"{f['cpu_ms_per_event']:.2f}",
                    f"{f['usd_per_million_events']:.3f}",
                )
                for name, f in impls.items()
            ],
        ),
        "",
        "USD per million events by service (EventBridge and the SendMessage calls that bring "
        "the records to the queue cost every implementation the same: the last column is the "
        "rest, what the design decides):",
        "",
        markdown_table(
            ("implementation", *SERVICE_TITLES, "total", "total without arrival"),
            [
                (
                    f"`{name}`",
                    *(f"{f['usd_per_million_events_by_service'].get(s, 0):.3f}" for s in SERVICES),
                    f"{f['usd_per_million_events']:.3f}",
                    f"{_without_arrival(f):.3f}",
                )
                for name, f in impls.items()
            ],
        ),
        "",
        "DynamoDB by table (`table/index` for index entries): write and read units per event, "
        "USD per million events, average item bytes as written; and the same writes with the "
        "stored blobs uncompressed:",
        "",
        markdown_table(
            (
                "implementation",
                "table",
                "WRU/event",
                "RRU/event",
                "USD per million",
                "item bytes",
                "uncompressed WRU/event",
                "uncompressed item bytes",
            ),
            [
                (
                    f"`{name}`",
                    f"`{table}`",
                    _of(f, "ddb_write_units_by_table_per_event", table),
                    _of(f, "ddb_read_units_by_table_per_event", table),
                    _of(f, "usd_per_million_events_by_table", table),
                    _of(f, "ddb_average_item_bytes", table, "{:.0f}"),
                    _of(f, "ddb_write_units_by_table_per_event_uncompressed", table),
                    _of(f, "ddb_average_item_bytes_uncompressed", table, "{:.0f}"),
                )
                for name, f in impls.items()
                for table in sorted(
                    set(f["ddb_write_units_by_table_per_event"])
                    | set(f.get("ddb_read_units_by_table_per_event", {}))
                )
            ],
        ),
        "",
        "Log bytes per event by kind (audit records are ours' one line per decision; the "
        "baselines' lines are their one line per record):",
        "",
        markdown_table(
            ("implementation", "audit", "other lines", "EMF metrics", "Lambda platform"),
            [
                (
                    f"`{name}`",
                    f"{kinds.get('audit', 0):.0f}",
                    f"{kinds.get('lines', 0) - kinds.get('audit', 0):.0f}",
                    f"{kinds.get('emf_metrics', 0):.0f}",
                    f"{kinds.get('lambda_platform', 0):.0f}",
                )
                for name, f in impls.items()
                for kinds in [f.get("log_bytes_per_event_by_kind", {})]
            ],
        ),
        "",
        "Every implementation delivered to each consumer: "
        + ", ".join(f"`{n}` {f['delivered_per_consumer']:.0f}" for n, f in impls.items())
        + " (duplicates and invalid events are not delivered; the seed port's key is the "
        "envelope id, so it delivers a provider re-send again).",
        "",
    ]


def _of(figures: dict[str, Any], key: str, table: str, form: str = "{:.3f}") -> str:
    """One table's figure of a per-table mapping, "-" where the run has none."""
    values = figures.get(key, {})
    return form.format(values[table]) if table in values else "-"


def _without_arrival(figures: dict[str, Any]) -> float:
    total: float = figures["usd_per_million_events"]
    return total - float(figures.get("usd_per_million_events_arrival", 0.0))


def benchmark_tables(report: dict[str, Any], checks: Sequence[dict[str, Any]]) -> str:
    impls = report["implementations"]
    prices = report["prices"]
    realistic = report.get("mixes", {}).get("realistic", {})
    parts = [
        f"Generated by `make bench` on {_today()}: {report['events']:,} simulated small-mix "
        f"records and {realistic.get('events', 0):,} realistic-mix records per implementation, "
        f"one moto server; prices {prices['region']} on-demand, in effect since "
        f"{prices['as_of']}.",
        "",
        _traffic_line(report),
        "",
    ]
    for mix, events, mix_impls in _mixes(report):
        parts += mix_tables(mix, events, mix_impls)
    parts += [
        "AWS requests per event by operation, small mix (the event source mapping's receive "
        "and delete and EventBridge's SendMessage are modelled, the same for all):",
        "",
        markdown_table(
            ("implementation", "operation", "per event"),
            [
                (f"`{name}`", f"`{operation}`", f"{count:.3f}")
                for name, f in impls.items()
                for operation, count in f["requests_by_operation_per_event"].items()
            ],
        ),
        "",
        f"Cold import: `import app` {report['import_s']['app'] * 1000:.0f} ms, `import boto3` "
        f"{report['import_s']['boto3'] * 1000:.0f} ms "
        f"({report['import_s']['app'] / report['import_s']['boto3']:.2f}x; median of 7 fresh "
        "interpreters each). Handlers load their own modules on first call; the ingest "
        "function's whole cold-start import (`import app, chalicelib.ingest.batch, "
        f"chalicelib.runtime`) is {report['import_s'].get('ingest_cold', 0) * 1000:.0f} ms.",
        "",
        "Targets:",
        "",
        markdown_table(
            ("target", "measured", "required", "met"),
            [
                (
                    c["target"],
                    f"{c['measured']:.3f}",
                    c["required"],
                    "yes" if c["met"] else "**no**",
                )
                for c in checks
            ],
        ),
        "",
        "Scaling, ours: cost per event against traffic size (a fresh stage each):",
        "",
        markdown_table(
            ("events", "batches", "USD per million events", "requests/event", "WRU/event"),
            [
                (
                    f"{row['events']:,}",
                    f"{row['batches']:,}",
                    f"{row['usd_per_million_events']:.3f}",
                    f"{row['requests_per_event']:.3f}",
                    f"{row['ddb_write_units_per_event']:.3f}",
                )
                for row in report["scaling"]["cost_per_event"]
            ],
        ),
        "",
        "Ours' cost per event against the number of interactions in progress at once (the "
        "simulator's default is 25; the baselines' cost does not depend on it):",
        "",
        markdown_table(
            (
                "interactions in progress",
                "claims (PutItem)/event",
                "WRU/event",
                "RRU/event",
                "requests/event",
                "USD per million events",
            ),
            [
                (
                    f"{row['concurrent_interactions']:,}",
                    f"{row['claims_per_event']:.3f}",
                    f"{row['ddb_write_units_per_event']:.3f}",
                    f"{row['ddb_read_units_per_event']:.3f}",
                    f"{row['requests_per_event']:.3f}",
                    f"{row['usd_per_million_events']:.3f}",
                )
                for row in report["scaling"].get("cost_by_interactions_in_progress", [])
            ],
        ),
        "",
        "Ours on the small mix at a larger event source mapping batch (the same records; "
        "claims are per interaction of a batch and time-index items per second of a batch, "
        "so both fall per event as batches grow):",
        "",
        markdown_table(
            (
                "batch size",
                "WRU/event",
                "of which ledger",
                "of which time index",
                "RRU/event",
                "requests/event",
                "USD per million events",
                "delivered / consumer",
            ),
            [
                (
                    row["batch_size"],
                    f"{row['ddb_write_units_per_event']:.3f}",
                    f"{row['ddb_write_units_by_table_per_event'].get('ledger', 0):.3f}",
                    f"{row['ddb_write_units_by_table_per_event'].get('time-index', 0):.3f}",
                    f"{row['ddb_read_units_per_event']:.3f}",
                    f"{row['requests_per_event']:.3f}",
                    f"{row['usd_per_million_events']:.3f}",
                    f"{row['delivered_per_consumer']:.0f}",
                )
                for row in report["scaling"].get("cost_by_batch_size", [])
            ],
        ),
        "",
        "Replay: one `GET /replay` page (limit 100, the store's whole day as the window) "
        "against the store's size:",
        "",
        markdown_table(
            ("stored events", "page", "events", "read units", "requests"),
            [
                (
                    f"{row['stored_events']:,}",
                    page.replace("_", " "),
                    row[page]["events_returned"],
                    f"{row[page]['read_units']:.1f}",
                    ", ".join(f"{op.split(':')[1]} {n}" for op, n in row[page]["requests"].items()),
                )
                for row in report["scaling"]["replay_page"]
                for page in ("first_page", "middle_page")
            ],
        ),
    ]
    return "\n".join(parts)


def scaling_tables(report: dict[str, Any]) -> str:
    impls = report["implementations"]
    ours = impls["ours"]
    rows = []
    for rate in SUSTAINED_RATES:
        millions = rate * SECONDS_PER_MONTH / 1_000_000
        for name, figures in impls.items():
            by_service = figures["usd_per_million_events_by_service"]
            rows.append(
                (
                    f"{rate:,}/s",
                    f"`{name}`",
                    *(f"{by_service.get(s, 0) * millions:,.0f}" for s in SERVICES),
                    f"**{figures['usd_per_million_events'] * millions:,.0f}**",
                )
            )
    concurrency_rows = []
    for rate in SUSTAINED_RATES:
        for name, figures in impls.items():
            invocations = figures["invocations"] / report["events"] * rate
            milliseconds = figures["lambda_ms_per_invocation"]
            concurrency_rows.append(
                (
                    f"{rate:,}/s",
                    f"`{name}`",
                    f"{invocations:,.0f}",
                    f"{milliseconds:.0f}",
                    f"{invocations * milliseconds / 1000:,.0f}",
                )
            )
    load_rows = []
    for rate in SUSTAINED_RATES:
        by_table = ours["ddb_write_units_by_table_per_event"]
        # The time index (its own table; a GSI entry per event in runs before it existed).
        index = sum(u for table, u in by_table.items() if table == "time-index" or "/" in table)
        load_rows.append(
            (
                f"{rate:,}/s",
                f"{ours['ddb_write_units_per_event'] * rate:,.0f}",
                f"{index * rate:,.0f}",
                f"{ours['ddb_read_units_per_event'] * rate:,.0f}",
                f"{ours['delivered_per_consumer'] / report['events'] * rate:,.0f}",
                f"{ours['sns_billable_per_event'] * rate:,.0f}",
            )
        )
    return "\n".join(
        [
            f"Generated by `make bench` on {_today()} from the per-event figures of "
            f"{report['events']:,} simulated events (30-day month, on-demand list prices "
            f"in effect since {report['prices']['as_of']}, before free tiers):",
            "",
            markdown_table(
                ("sustained", "implementation", *SERVICE_TITLES, "USD/month"),
                rows,
            ),
            "",
            "Lambda concurrency = invocations per second x duration, with the duration measured "
            "here (one full core, moto on the same machine):",
            "",
            markdown_table(
                ("sustained", "implementation", "invocations/s", "ms/invocation", "concurrency"),
                concurrency_rows,
            ),
            "",
            "What ours asks of each service at those rates (per second):",
            "",
            markdown_table(
                (
                    "sustained",
                    "DynamoDB WRU (all)",
                    "of which time-index WRU",
                    "DynamoDB RRU",
                    "messages per consumer topic",
                    "SNS publish requests (all topics)",
                ),
                load_rows,
            ),
        ]
    )


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "-"


def analysis(report: dict[str, Any], prices: dict[str, Any] | None = None) -> str:
    """Where ours' money and units go, the targets' gaps, and what the measured levers save:
    the figures of the run itself, so the reading stays true to the last full run."""
    prices = prices or report["prices"]
    write_price = prices["dynamodb_per_million_write_units"]
    read_price = prices["dynamodb_per_million_read_units"]
    lines = []
    for mix, _, impls in _mixes(report):
        ours, seed, powertools = impls["ours"], impls["seed_port"], impls["powertools"]
        writes = ours["ddb_write_units_by_table_per_event"]
        reads = ours.get("ddb_read_units_by_table_per_event", {})
        total_writes = ours["ddb_write_units_per_event"]
        arrival = ours.get("usd_per_million_events_arrival", 0.0)
        lines += [
            f"- **{mix.capitalize()} mix.** Ours costs {ours['usd_per_million_events']:.2f} USD "
            f"per million events against {seed['usd_per_million_events']:.2f} (seed port) and "
            f"{powertools['usd_per_million_events']:.2f} (Powertools): "
            f"{ours['usd_per_million_events'] / seed['usd_per_million_events']:.2f} x and "
            f"{ours['usd_per_million_events'] / powertools['usd_per_million_events']:.2f} x. "
            f"{arrival:.2f} of every bill is the arrival (EventBridge and the SendMessage into "
            f"the queue), the same for all three: "
            f"{_share(arrival, seed['usd_per_million_events'])} of the seed port's bill. "
            f"At 0.6 x the seed port's total, everything else would have to cost "
            f"{0.6 * seed['usd_per_million_events'] - arrival:.2f} (one write unit per event "
            f"alone is {write_price:.3f}); without the arrival the ratios are "
            f"{_without_arrival(ours) / _without_arrival(seed):.2f} x and "
            f"{_without_arrival(ours) / _without_arrival(powertools):.2f} x.",
            f"  DynamoDB is ours' largest own line "
            f"({ours['usd_per_million_events_by_service']['dynamodb']:.2f}): "
            f"{total_writes:.2f} write units per event, of which the stored event "
            f"{writes.get('events', 0):.2f}, the ledger's claims {writes.get('ledger', 0):.2f} "
            f"and the time index {writes.get('time-index', 0):.2f}; "
            f"{ours['ddb_read_units_per_event']:.2f} read units, of which dedup and in-flight "
            f"lookups in the events table {reads.get('events', 0):.2f} and interaction records "
            f"{reads.get('ledger', 0):.2f} (strongly consistent, one unit per key found or not).",
        ]
        if "ddb_write_units_per_event_uncompressed" in ours:
            plain = ours["ddb_write_units_per_event_uncompressed"]
            plain_events = ours["ddb_write_units_by_table_per_event_uncompressed"].get("events", 0)
            lines.append(
                f"  Compression: the same writes uncompressed would be {plain:.2f} write units "
                f"per event (events table {plain_events:.2f} instead of "
                f"{writes.get('events', 0):.2f}); stored as they are, "
                f"{total_writes / plain:.2f} x."
            )
        lines.append(
            f"  Logs: {ours['log_bytes_per_event']:.0f} bytes per event "
            f"({ours.get('audit_log_bytes_per_event', 0):.0f} audit, "
            f"{ours['log_bytes_per_event_by_kind']['emf_metrics']:.0f} EMF metrics), "
            f"{ours['usd_per_million_events_by_service']['cloudwatch_logs']:.3f} USD per "
            f"million; the baselines write one line per record "
            f"({seed['log_bytes_per_event']:.0f} and {powertools['log_bytes_per_event']:.0f} "
            "bytes with Lambda's own lines)."
        )
    small = report["implementations"]["ours"]
    writes = small["ddb_write_units_by_table_per_event"]
    reads = small.get("ddb_read_units_by_table_per_event", {})
    study = report["scaling"].get("cost_by_batch_size", [])
    lines.append("")
    lines.append("Levers on the ledger's and the index's share (small mix):")
    lines.append("")
    if len(study) > 1:
        base, larger = study[0], study[-1]
        lines.append(
            f"- *Larger batches* (measured above): at {larger['batch_size']} records a batch "
            f"ours writes {larger['ddb_write_units_per_event']:.2f} units per event instead of "
            f"{base['ddb_write_units_per_event']:.2f} and costs "
            f"{larger['usd_per_million_events']:.2f} USD per million instead of "
            f"{base['usd_per_million_events']:.2f}, delivering the same events: a batch holds "
            "more events per interaction (one claim each) and per second (one index item "
            "each). A deployment setting (the ingest function's batch size and batching "
            "window), bought with up to the window's latency."
        )
    index_units = writes.get("time-index", 0.0)
    per_batch_index = 1 / BATCH_EVENTS  # one item per batch of 10 instead of one per second
    lines.append(
        f"- *One time-index item per batch* instead of one per second of a batch: "
        f"{index_units:.2f} -> about {per_batch_index:.2f} write units per event, "
        f"{(index_units - per_batch_index) * write_price:.3f} USD per million (readers would "
        "start a window one batch span early and sort entries, not items)."
    )
    lines.append(
        f"- *Eventually consistent reads of interaction records*: a stale record only makes the "
        f"conditional claim fail and the record retry, so half of "
        f"{reads.get('ledger', 0):.2f} read units, {reads.get('ledger', 0) / 2 * read_price:.3f} "
        "USD per million, against a retry's latency when two batches of one interaction "
        "follow within a second. Dedup reads must stay strongly consistent (a stale miss "
        "would deliver twice)."
    )
    lines.append(
        "- *In-flight follow-up reads*: an interaction record keeps the keys it claimed until "
        "its next claim, so the next batch of that interaction reads their dedup records again "
        "(a second BatchGetItem in most batches). Writing the record at settle to clear them "
        "would cost a write unit to save a fraction of a read unit: the current trade is the "
        "cheaper one."
    )
    return "\n".join(lines)

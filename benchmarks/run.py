"""`make bench`: ours against the seed tutorial's design and a Powertools build, side by side.

    python -m benchmarks.run [--events N] [--realistic-events N] [--quick] [--seed S]
                             [--out PATH] [--no-charts]
    python -m benchmarks.run --from-json benchmarks/results/latest.json   (re-render only)

Two traffic mixes, one after the other against the same moto server: the small-event mix
(simulated CXone records, about 600 bytes, with duplicates, reordering and invalid events) and
the realistic mix (benchmarks/traffic_mix.py: Genesys conversations and 1.5-10 KB
transcription streams, Amazon Connect contact events, CXone; bursts, re-deliveries, provider
re-sends, reordering). For each mix every implementation gets the same records in the same
batches of 10, on a fresh stage of its own, and is measured through its SQS handler: events/s,
AWS requests per event by service, DynamoDB write and read units by table (and what the writes
would cost uncompressed), SNS billable publishes, log bytes (audit records apart), handler CPU,
and the USD per million events those come to at on-demand list prices, by service and by table
(benchmarks/accounting.py states the prices and their date). Then: the cold import time of
app.py against boto3 alone, ours' cost per event at several traffic sizes, and a replay page's
cost at two store sizes.

A full run writes benchmarks/results/latest.json, the charts in docs/img/ and the generated
tables in docs/benchmarks.md and docs/scaling.md; `--quick` (fewer events, a smaller store)
writes benchmarks/results/quick.json only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3
from rich.console import Console
from rich.table import Table

from benchmarks.accounting import PRICES
from benchmarks.harness import (
    ACCOUNT_ID,
    BATCH_SIZE,
    REGION,
    Implementation,
    fresh_stage,
    measure,
    moto_server,
    point_at,
    relay_settings,
    sqs_records,
    summarize,
)
from benchmarks.implementations import powertools_port, seed_port
from benchmarks.implementations.ours import Ours
from benchmarks.implementations.ours import provision as provision_ours
from benchmarks.metering import CallRecorder
from benchmarks.replay_cost import replay_page_cost

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"
IMPLEMENTATIONS = ("ours", "seed_port", "powertools")
# Sizes chosen so that a full run stays under 10 minutes on a shared 2-core machine (the
# Powertools build, one Publish per consumer per event, is the slowest part).
# The small mix's own run of ours is one of the scaling sizes and the interaction-mix row of
# the simulator's default, so neither is run twice.
DEFAULT_EVENTS = 1_000
REALISTIC_EVENTS = 600
SCALING_EVENTS = (100, 3_000)
STORE_SIZES = (10_000, 30_000)
QUICK_EVENTS = 300
QUICK_REALISTIC_EVENTS = 200
QUICK_SCALING_EVENTS = (100,)
QUICK_STORE_SIZES = (1_000, 10_000)
SIMULATOR_INTERACTIONS_IN_PROGRESS = 25  # scripts.traffic.simulate's default profile
INTERACTION_MIX = (SIMULATOR_INTERACTIONS_IN_PROGRESS, 1_000)  # interactions in progress
INTERACTION_MIX_EVENTS = 600
IMPORT_REPEATS = 7
MIXES = ("small", "realistic")
# Ours at a larger event source mapping batch (with a batching window, SQS allows up to
# 10,000): its claims and time-index items are per interaction and per second of a batch.
STUDY_BATCH_SIZES = (50,)
# The targets for ours (issue 15; issue 7's flat scaling).
MIN_SPEED_RATIO_TO_SEED = 1.5
MAX_USD_RATIO_TO_SEED = 0.6
MAX_USD_RATIO_TO_POWERTOOLS = 0.5
MAX_REQUEST_RATIO_TO_POWERTOOLS = 0.6
MAX_SMALL_MIX_WRITE_UNITS = 1.6
MAX_WRITE_UNITS_RATIO_TO_UNCOMPRESSED = 0.6
MAX_IMPORT_RATIO_TO_BOTO3 = 1.5
FLAT_TOLERANCE = 0.10  # cost per event within 10% across sizes counts as flat

LOGGERS = {
    "ours": ("cxone-relay",),
    "seed_port": ("benchmarks.seed_port",),
    "powertools": (powertools_port.LOGGER_SERVICE,),
}

# Wide enough for the tables when the output is not a terminal (make, CI logs).
console = Console(width=None if sys.stdout.isatty() else 160)


# ---- builders: each provisions a fresh stage and hooks a recorder to the handler's session ----


def _queue_arn(queue_name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue_name}"


def build_ours(recorder: CallRecorder) -> tuple[Implementation, str]:
    settings = relay_settings(fresh_stage("o"))
    provision_ours(boto3.Session(region_name=REGION), settings)
    return Ours(settings, recorder.attach), _queue_arn(settings.names.ingest_queue)


def build_seed_port(recorder: CallRecorder) -> tuple[Implementation, str]:
    stage = fresh_stage("s")
    settings = relay_settings(stage)
    resources = seed_port.provision(
        boto3.Session(region_name=REGION), f"bench-{stage}", settings.consumers
    )
    session = boto3.Session(region_name=REGION)
    recorder.attach(session)
    return seed_port.SeedPort(session, resources, settings), _queue_arn(f"bench-{stage}-ingest")


def build_powertools(recorder: CallRecorder) -> tuple[Implementation, str]:
    stage = fresh_stage("p")
    settings = relay_settings(stage)
    resources = powertools_port.provision(
        boto3.Session(region_name=REGION), f"bench-{stage}", settings.consumers
    )
    session = boto3.Session(region_name=REGION)
    recorder.attach(session)
    implementation = powertools_port.PowertoolsPort(session, resources, settings)
    return implementation, _queue_arn(f"bench-{stage}-ingest")


BUILDERS: dict[str, Callable[[CallRecorder], tuple[Implementation, str]]] = {
    "ours": build_ours,
    "seed_port": build_seed_port,
    "powertools": build_powertools,
}


# ---- measurements ----------------------------------------------------------------------------


def traffic_records(
    count: int, seed: int, concurrent_interactions: int | None = None
) -> list[dict[str, Any]]:
    from scripts.traffic.simulate import TrafficProfile, generate_traffic

    profile = None
    if concurrent_interactions is not None:
        profile = TrafficProfile(concurrent_interactions=concurrent_interactions)
    traffic = generate_traffic(count, profile=profile, seed=seed)
    return sqs_records([item.event for item in traffic])


def realistic_records(count: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The realistic mix's records and what it holds (kinds, sizes, copies)."""
    from benchmarks.traffic_mix import realistic_events

    # Amazon Connect events are in: the relay has a profile for them (on by default).
    events, summary = realistic_events(count, seed, connect=True)
    return sqs_records(events), summary.to_json()


def compare_implementations(
    records: list[dict[str, Any]], mix: str = "small"
) -> dict[str, dict[str, Any]]:
    results = {}
    for name in IMPLEMENTATIONS:
        started = time.perf_counter()
        results[name] = summarize(measure(BUILDERS[name], records, LOGGERS[name]))
        console.log(
            f"{mix} mix, {name}: {len(records)} events in {time.perf_counter() - started:.0f} s"
        )
    return results


def import_seconds(statement: str, repeats: int = IMPORT_REPEATS) -> float:
    """Median time of `statement` in a fresh interpreter (the import alone, not start-up)."""
    code = (
        "import time\n"
        "started = time.perf_counter()\n"
        f"{statement}\n"
        "print(time.perf_counter() - started)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT")}
    env["AWS_REGION"] = REGION  # app.py validates its settings at import
    samples = []
    for _ in range(repeats):
        output = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if output.returncode != 0:
            raise RuntimeError(f"{statement!r} failed: {output.stderr.strip()[-500:]}")
        samples.append(float(output.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def measure_imports() -> dict[str, float]:
    # Alternated, so that a slow moment of the machine does not land on one side only.
    # `app` is what every function imports at cold start (handlers load their own modules
    # on first call); `ingest_cold` adds what the ingest function loads for its first batch,
    # so the whole cold-start import of the busiest function is reported too.
    app, boto, ingest = [], [], []
    for _ in range(IMPORT_REPEATS):
        app.append(import_seconds("import app", repeats=1))
        boto.append(import_seconds("import boto3", repeats=1))
        ingest.append(
            import_seconds("import app, chalicelib.ingest.batch, chalicelib.runtime", repeats=1)
        )
    return {
        "app": statistics.median(app),
        "boto3": statistics.median(boto),
        "ingest_cold": statistics.median(ingest),
    }


def scaling_row(size: int, figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "events": size,
        "batches": figures["invocations"],
        "usd_per_million_events": figures["usd_per_million_events"],
        "usd_per_event": figures["usd_per_million_events"] / 1_000_000,
        "requests_per_event": figures["requests_per_event"]["total"],
        "ddb_write_units_per_event": figures["ddb_write_units_per_event"],
        "ddb_read_units_per_event": figures["ddb_read_units_per_event"],
        "sns_billable_per_event": figures["sns_billable_per_event"],
        "events_per_s": figures["events_per_s"],
    }


def scaling_run(
    sizes: Sequence[int], seed: int, measured: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Ours' cost per event at each traffic size (a fresh stage each). `measured` holds the
    figures of sizes already run on this traffic (the small mix's own run): not run twice."""
    rows = []
    for size in sorted(set(sizes) | set(measured)):
        if size in measured:
            rows.append(scaling_row(size, measured[size]))
            continue
        started = time.perf_counter()
        figures = summarize(measure(build_ours, traffic_records(size, seed), LOGGERS["ours"]))
        rows.append(scaling_row(size, figures))
        console.log(f"scaling: {size} events in {time.perf_counter() - started:.0f} s")
    return rows


def interaction_mix_row(level: int, events: int, figures: dict[str, Any]) -> dict[str, Any]:
    operations = figures["requests_by_operation_per_event"]
    return {
        "concurrent_interactions": level,
        "events": events,
        "claims_per_event": operations.get("dynamodb:PutItem", 0.0),
        "usd_per_million_events": figures["usd_per_million_events"],
        "requests_per_event": figures["requests_per_event"]["total"],
        "ddb_write_units_per_event": figures["ddb_write_units_per_event"],
        "ddb_read_units_per_event": figures["ddb_read_units_per_event"],
    }


def interaction_mix_run(
    levels: Sequence[int], events: int, seed: int, measured: dict[int, tuple[int, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Ours' cost per event against how many interactions are in progress at once.

    Ours claims each interaction of a batch once, so its cost per event depends on how many
    distinct interactions a batch of 10 holds; the baselines' cost is per event whatever the
    mix. The simulator's default is 25 interactions in progress; a busy contact center has
    thousands, and then nearly every record of a batch is a different interaction.
    `measured` maps a level already run (the small mix is the simulator's default) to its
    (events, figures).
    """
    rows = []
    for level in levels:
        if level in measured:
            rows.append(interaction_mix_row(level, *measured[level]))
            continue
        started = time.perf_counter()
        records = traffic_records(events, seed, concurrent_interactions=level)
        figures = summarize(measure(build_ours, records, LOGGERS["ours"]))
        rows.append(interaction_mix_row(level, events, figures))
        console.log(
            f"interaction mix: {level} in progress, {events} events in "
            f"{time.perf_counter() - started:.0f} s"
        )
    return rows


def batch_size_row(size: int, events: int, figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "batch_size": size,
        **scaling_row(events, figures),
        "ddb_write_units_by_table_per_event": figures["ddb_write_units_by_table_per_event"],
        "delivered_per_consumer": figures["delivered_per_consumer"],
    }


def batch_size_run(
    sizes: Sequence[int], records: list[dict[str, Any]], measured: dict[str, Any]
) -> list[dict[str, Any]]:
    """Ours on the small mix's records at other batch sizes (`measured`: its run at 10)."""
    rows = [batch_size_row(BATCH_SIZE, len(records), measured)]
    for size in sizes:
        started = time.perf_counter()
        figures = summarize(measure(build_ours, records, LOGGERS["ours"], batch_size=size))
        rows.append(batch_size_row(size, len(records), figures))
        console.log(
            f"batch size {size}: {len(records)} events in {time.perf_counter() - started:.0f} s"
        )
    return rows


def spread(values: Sequence[float]) -> float:
    """(max - min) / min: 0 for identical values."""
    low = min(values)
    return (max(values) - low) / low if low else float("inf")


# ---- targets --------------------------------------------------------------------------------


def mix_implementations(report: dict[str, Any], mix: str) -> dict[str, dict[str, Any]]:
    """The per-implementation figures of one mix (the small-event mix's are at the top level,
    where latest.json has always kept them)."""
    figures: dict[str, dict[str, Any]] = (
        report["implementations"]
        if mix == "small"
        else report.get("mixes", {}).get(mix, {}).get("implementations", {})
    )
    return figures


def _check(target: str, measured: float, limit: float, at_most: bool) -> dict[str, Any]:
    return {
        "target": target,
        "measured": measured,
        "required": f"{'<=' if at_most else '>='} {limit:.3f}",
        "met": measured <= limit if at_most else measured >= limit,
    }


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured and required figures."""
    checks = []
    for mix in MIXES:
        impls = mix_implementations(report, mix)
        if not impls:
            continue
        ours, seed, powertools = impls["ours"], impls["seed_port"], impls["powertools"]
        checks += [
            _check(
                f"{mix}: events/s >= {MIN_SPEED_RATIO_TO_SEED} x seed_port",
                ours["events_per_s"],
                MIN_SPEED_RATIO_TO_SEED * seed["events_per_s"],
                at_most=False,
            ),
            _check(
                f"{mix}: USD per million events <= {MAX_USD_RATIO_TO_SEED} x seed_port",
                ours["usd_per_million_events"],
                MAX_USD_RATIO_TO_SEED * seed["usd_per_million_events"],
                at_most=True,
            ),
            _check(
                f"{mix}: USD per million events <= {MAX_USD_RATIO_TO_POWERTOOLS} x powertools",
                ours["usd_per_million_events"],
                MAX_USD_RATIO_TO_POWERTOOLS * powertools["usd_per_million_events"],
                at_most=True,
            ),
            _check(
                f"{mix}: AWS requests per event <= {MAX_REQUEST_RATIO_TO_POWERTOOLS} x powertools",
                ours["requests_per_event"]["total"],
                MAX_REQUEST_RATIO_TO_POWERTOOLS * powertools["requests_per_event"]["total"],
                at_most=True,
            ),
        ]
        if mix == "small":
            checks.append(
                _check(
                    f"small: DynamoDB write units per event <= {MAX_SMALL_MIX_WRITE_UNITS}",
                    ours["ddb_write_units_per_event"],
                    MAX_SMALL_MIX_WRITE_UNITS,
                    at_most=True,
                )
            )
        else:
            checks.append(
                _check(
                    f"{mix}: DynamoDB write units per event <= "
                    f"{MAX_WRITE_UNITS_RATIO_TO_UNCOMPRESSED} x uncompressed",
                    ours["ddb_write_units_per_event"],
                    MAX_WRITE_UNITS_RATIO_TO_UNCOMPRESSED
                    * ours["ddb_write_units_per_event_uncompressed"],
                    at_most=True,
                )
            )
    imports = report["import_s"]
    for key, statement in (("app", "import app"), ("ingest_cold", "ingest function's import")):
        if key in imports:
            checks.append(
                _check(
                    f"{statement} <= {MAX_IMPORT_RATIO_TO_BOTO3} x import boto3 (s)",
                    imports[key],
                    MAX_IMPORT_RATIO_TO_BOTO3 * imports["boto3"],
                    at_most=True,
                )
            )
    scaling = report["scaling"]
    checks.append(
        _check(
            "cost per event flat across traffic sizes (spread)",
            scaling["cost_spread"],
            FLAT_TOLERANCE,
            at_most=True,
        )
    )
    checks.append(
        _check(
            "replay page read units flat across store sizes (spread)",
            scaling["replay_page_spread"],
            FLAT_TOLERANCE,
            at_most=True,
        )
    )
    return checks


# ---- output ---------------------------------------------------------------------------------


def implementations_table(impls: dict[str, dict[str, Any]], mix: str = "small") -> Table:
    table = Table(title=f"{mix.capitalize()} mix, per implementation (per event unless stated)")
    columns = (
        "implementation",
        "events/s",
        "DynamoDB req",
        "SNS req",
        "SQS req",
        "total req",
        "write units",
        "read units",
        "SNS billable",
        "log bytes",
        "audit bytes",
        "CPU ms",
        "USD / M events",
        "delivered / consumer",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "implementation" else "right")
    for name, figures in impls.items():
        requests = figures["requests_per_event"]
        table.add_row(
            name,
            f"{figures['events_per_s']:.1f}",
            f"{requests.get('dynamodb', 0):.3f}",
            f"{requests.get('sns', 0):.3f}",
            f"{requests.get('sqs', 0):.3f}",
            f"{requests['total']:.3f}",
            f"{figures['ddb_write_units_per_event']:.3f}",
            f"{figures['ddb_read_units_per_event']:.3f}",
            f"{figures['sns_billable_per_event']:.3f}",
            f"{figures['log_bytes_per_event']:.0f}",
            f"{figures.get('audit_log_bytes_per_event', 0):.0f}",
            f"{figures['cpu_ms_per_event']:.2f}",
            f"{figures['usd_per_million_events']:.3f}",
            f"{figures['delivered_per_consumer']:.0f}",
        )
    return table


def targets_table(checks: list[dict[str, Any]]) -> Table:
    table = Table(title="Targets")
    for column in ("target", "measured", "required", "met"):
        table.add_column(column)
    for check in checks:
        table.add_row(
            check["target"],
            f"{check['measured']:.3f}",
            check["required"],
            "[green]yes[/green]" if check["met"] else "[red]NO[/red]",
        )
    return table


def scaling_table(scaling: dict[str, Any]) -> Table:
    table = Table(title="Scaling (ours)")
    for column in ("events", "batches", "USD / M events", "requests", "write units", "events/s"):
        table.add_column(column, justify="right")
    for row in scaling["cost_per_event"]:
        table.add_row(
            str(row["events"]),
            str(row["batches"]),
            f"{row['usd_per_million_events']:.3f}",
            f"{row['requests_per_event']:.3f}",
            f"{row['ddb_write_units_per_event']:.3f}",
            f"{row['events_per_s']:.1f}",
        )
    return table


def replay_table(scaling: dict[str, Any]) -> Table:
    table = Table(title="Replay window page (limit 100)")
    for column in ("stored events", "page", "events", "read units", "requests", "moto s"):
        table.add_column(column, justify="right")
    for row in scaling["replay_page"]:
        for page in ("first_page", "middle_page"):
            figures = row[page]
            table.add_row(
                str(row["stored_events"]),
                page.replace("_", " "),
                str(figures["events_returned"]),
                f"{figures['read_units']:.1f}",
                str(sum(figures["requests"].values())),
                f"{figures['seconds']:.2f}",
            )
    return table


def update_generated_block(path: Path, name: str, text: str) -> bool:
    """Replace the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in `path`."""
    if not path.exists():
        return False
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    content = path.read_text()
    if begin not in content or end not in content:
        return False
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text.strip()}\n{end}{tail}")
    return True


def build_report(args: argparse.Namespace) -> dict[str, Any]:
    events = args.events or (QUICK_EVENTS if args.quick else DEFAULT_EVENTS)
    realistic_events = args.realistic_events or (
        QUICK_REALISTIC_EVENTS if args.quick else REALISTIC_EVENTS
    )
    scaling_sizes = QUICK_SCALING_EVENTS if args.quick else SCALING_EVENTS
    store_sizes = QUICK_STORE_SIZES if args.quick else STORE_SIZES
    console.log("import times (fresh interpreters)")
    imports = measure_imports()
    with moto_server() as endpoint:
        point_at(endpoint)
        records = traffic_records(events, args.seed)
        implementations = compare_implementations(records, "small")
        realistic, realistic_traffic = realistic_records(realistic_events, args.seed)
        realistic_implementations = compare_implementations(realistic, "realistic")
        ours_small = implementations["ours"]
        cost_rows = scaling_run(scaling_sizes, args.seed, {events: ours_small})
        mix_events = QUICK_EVENTS if args.quick else INTERACTION_MIX_EVENTS
        mix_rows = interaction_mix_run(
            INTERACTION_MIX,
            mix_events,
            args.seed,
            {SIMULATOR_INTERACTIONS_IN_PROGRESS: (events, ours_small)},
        )
        batch_rows = batch_size_run(STUDY_BATCH_SIZES, records, ours_small)
        started = time.perf_counter()
        replay_rows = replay_page_cost(store_sizes)
        console.log(f"replay pages: {time.perf_counter() - started:.0f} s")
    page_units = [
        row[p]["read_units"] for row in replay_rows for p in ("first_page", "middle_page")
    ]
    return {
        "implementations": implementations,
        "mixes": {
            "realistic": {
                "events": realistic_events,
                "traffic": realistic_traffic,
                "implementations": realistic_implementations,
            }
        },
        "import_s": imports,
        "events": events,
        "prices": PRICES.to_json(),
        "scaling": {
            "cost_per_event": cost_rows,
            "cost_spread": spread([row["usd_per_million_events"] for row in cost_rows]),
            "cost_by_interactions_in_progress": mix_rows,
            "cost_by_batch_size": batch_rows,
            "replay_page": replay_rows,
            "replay_page_spread": spread(page_units),
        },
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument(
        "--events", type=int, default=None, help="small-mix events per implementation"
    )
    parser.add_argument(
        "--realistic-events",
        type=int,
        default=None,
        help="realistic-mix events per implementation",
    )
    parser.add_argument("--quick", action="store_true", help="a short run; writes quick.json")
    parser.add_argument("--seed", type=int, default=7, help="traffic simulator seed")
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON")
    parser.add_argument("--no-charts", action="store_true", help="leave docs/img/ alone")
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="measure nothing: print and render (charts, docs tables) an earlier run's JSON",
    )
    args = parser.parse_args(argv)
    for option, value in (("--events", args.events), ("--realistic-events", args.realistic_events)):
        if value is not None and value < 10:
            parser.error(f"{option} must be at least 10")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.from_json is not None:
        report = json.loads(args.from_json.read_text())
    else:
        report = build_report(args)
    checks = evaluate_targets(report)
    for mix in MIXES:
        impls = mix_implementations(report, mix)
        if impls:
            console.print(implementations_table(impls, mix))
    console.print(scaling_table(report["scaling"]))
    console.print(replay_table(report["scaling"]))
    imports = report["import_s"]
    console.print(
        f"import app.py {imports['app'] * 1000:.0f} ms, import boto3 {imports['boto3'] * 1000:.0f}"
        f" ms ({imports['app'] / imports['boto3']:.2f}x); the ingest function's whole import "
        f"{imports.get('ingest_cold', 0) * 1000:.0f} ms "
        f"({imports.get('ingest_cold', 0) / imports['boto3']:.2f}x)"
    )
    console.print(targets_table(checks))
    if args.from_json is None:
        out = args.out or RESULTS / ("quick.json" if args.quick else "latest.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        console.log(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    if not args.quick and not args.no_charts:
        from benchmarks.charts import render_charts
        from benchmarks.docs_tables import analysis, benchmark_tables, scaling_tables

        for chart in render_charts(report, DOCS / "img"):
            console.log(f"wrote {chart.relative_to(ROOT)}")
        update_generated_block(DOCS / "benchmarks.md", "results", benchmark_tables(report, checks))
        update_generated_block(DOCS / "benchmarks.md", "analysis", analysis(report))
        update_generated_block(DOCS / "scaling.md", "costs", scaling_tables(report))
    console.log(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

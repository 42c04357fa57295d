"""The two diagrams of the docs, drawn with matplotlib: `make diagrams` (or run this file).

    docs/img/data-flow.png            provider → EventBridge → SQS → ingest → SNS → consumers
    docs/img/sequence-late.png        claim → lease → wait → late, for one interaction

The pictures are data: edit the boxes, arrows and steps below, run `make diagrams`, commit
both this file and the PNGs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # after the backend is chosen
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(__file__).resolve().parent
INK = "#1d232b"
BLUE = "#1f3a5f"
PALE = "#e8eef5"
WARN = "#fde2c4"
FAIL = "#f7d4d4"
# No timestamp or version in the files: the same source makes the same PNG.
PNG_METADATA = {"Software": None}

# ---- data flow: (name, label, x, y, fill) on a 16 by 9 canvas --------------------------------

BOXES = [
    ("providers", "NICE CXone · Genesys Cloud\nAmazon Connect", 1.6, 7.6, PALE),
    ("push", "POST /events\n(HMAC-signed push)", 1.6, 5.6, PALE),
    ("bus", "EventBridge bus\nrule: source + detail-type", 5.0, 7.6, PALE),
    ("queue", "SQS ingest queue", 8.4, 7.6, PALE),
    ("dlq", "ingest DLQ\n(redrive policy)", 12.6, 7.6, FAIL),
    (
        "ingest",
        "Lambda ingest\n1 validate  2 claim  3 order\n4 fan-out  5 mark, store",
        8.4,
        4.9,
        PALE,
    ),
    ("ledger", "DynamoDB\nledger · events · time index", 4.4, 3.1, PALE),
    ("quarantine", "SNS quarantine topic\n(reason, errors, raw)", 12.6, 4.9, WARN),
    ("topics", "SNS topic per consumer\n<app>-<stage>-<consumer>", 8.4, 2.2, PALE),
    ("consumers", "subscribers\nSQS · Lambda · HTTPS", 12.6, 2.2, PALE),
    ("api", "REST API (IAM)\ntimeline · window · re-drive jobs", 4.4, 0.8, PALE),
]
ARROWS = [
    ("providers", "bus", "PutEvents"),
    ("push", "bus", "validated, put"),
    ("bus", "queue", "target"),
    ("queue", "dlq", "after maxReceiveCount"),
    ("queue", "ingest", "batches, partial failures"),
    ("ingest", "ledger", "conditional writes"),
    ("ingest", "quarantine", "invalid · too large"),
    ("ingest", "topics", "PublishBatch"),
    ("topics", "consumers", "filter policies"),
    ("api", "ledger", "queries"),
    ("api", "topics", "replay: true"),
]
BOX_WIDTH, BOX_HEIGHT = 3.0, 1.15
EDGE_GAP = 0.12  # between an arrow's end and the box border


def border_point(centre: tuple[float, float], towards: tuple[float, float]) -> tuple[float, float]:
    """Where the line from a box's centre towards another point leaves the box."""
    dx, dy = towards[0] - centre[0], towards[1] - centre[1]
    limits = []
    if dx:
        limits.append((BOX_WIDTH / 2 + EDGE_GAP) / abs(dx))
    if dy:
        limits.append((BOX_HEIGHT / 2 + EDGE_GAP) / abs(dy))
    t = min(limits)
    return centre[0] + t * dx, centre[1] + t * dy


def data_flow(path: Path) -> None:
    figure, axes = plt.subplots(figsize=(16, 9), dpi=100)
    axes.set_xlim(-0.2, 14.4)
    axes.set_ylim(-0.1, 8.6)
    axes.axis("off")
    centres = {}
    for name, label, x, y, fill in BOXES:
        centres[name] = (x, y)
        axes.add_patch(
            FancyBboxPatch(
                (x - BOX_WIDTH / 2, y - BOX_HEIGHT / 2),
                BOX_WIDTH,
                BOX_HEIGHT,
                boxstyle="round,pad=0.05,rounding_size=0.15",
                facecolor=fill,
                edgecolor=BLUE,
                linewidth=1.4,
            )
        )
        axes.text(x, y, label, ha="center", va="center", fontsize=10.5, color=INK)
    for start, end, label in ARROWS:
        (x0, y0) = border_point(centres[start], centres[end])
        (x1, y1) = border_point(centres[end], centres[start])
        axes.add_patch(
            FancyArrowPatch(
                (x0, y0),
                (x1, y1),
                arrowstyle="-|>",
                mutation_scale=16,
                color=BLUE,
                linewidth=1.3,
                shrinkA=0,
                shrinkB=0,
            )
        )
        axes.text(
            (x0 + x1) / 2,
            (y0 + y1) / 2 + 0.18,
            label,
            ha="center",
            fontsize=9,
            color=BLUE,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5},
        )
    axes.set_title("CXone Event Relay: data flow", fontsize=15, color=INK, loc="left")
    figure.tight_layout()
    figure.savefig(path, metadata=PNG_METADATA)
    plt.close(figure)


# ---- sequence: lanes and (from, to, label, style) steps -------------------------------------

LANES = ["ingest A\n(batch 1)", "ingest B\n(batch 2)", "DynamoDB\nledger", "SNS\nconsumer topics"]
# style: "call" (solid), "answer" (dashed), "note" (a note over a lane: from == to)
STEPS = [
    (0, 2, "claim seq 2 + seq 3 and the lease: one conditional write", "call"),
    (2, 0, "claimed; the interaction's lease is A's", "answer"),
    (1, 2, "claim seq 1", "call"),
    (2, 1, "ConditionalCheckFailed: lease busy", "answer"),
    (1, 1, "seq 1 fails with a short backoff (retried: lease busy)", "note"),
    (0, 3, "publish seq 2: crm-updater fails", "call"),
    (0, 0, "seq 2 stays in flight; seq 3 waits behind it (retried: ordering wait)", "note"),
    (0, 2, "record who got seq 2; release the lease", "call"),
    (0, 3, "retry: seq 2 to crm-updater, then seq 3 (high-water mark 3)", "call"),
    (1, 2, "retry seq 1: claimed; 1 < high-water mark 3", "call"),
    (2, 1, "late = true: decided once, kept for every retry and re-drive", "answer"),
    (1, 3, "publish seq 1 with late: true, never dropped", "call"),
]


def sequence(path: Path) -> None:
    figure, axes = plt.subplots(figsize=(14, 9), dpi=100)
    lane_x = [1.5 + 3.6 * index for index in range(len(LANES))]
    top, step_height = 8.4, 0.62
    bottom = top - step_height * (len(STEPS) + 1)
    axes.set_xlim(0, lane_x[-1] + 1.6)
    axes.set_ylim(bottom - 0.3, top + 0.9)
    axes.axis("off")
    for x, label in zip(lane_x, LANES, strict=True):
        axes.text(
            x,
            top + 0.45,
            label,
            ha="center",
            va="center",
            fontsize=11,
            color=INK,
            bbox={"boxstyle": "round,pad=0.4", "facecolor": PALE, "edgecolor": BLUE},
        )
        axes.plot([x, x], [bottom, top], color=BLUE, linewidth=1, linestyle=":")
    for number, (start, end, label, style) in enumerate(STEPS, start=1):
        y = top - step_height * number
        if style == "note":
            axes.text(
                lane_x[start] + 0.15,
                y,
                f"{number}. {label}",
                ha="left",
                va="center",
                fontsize=9.5,
                color=INK,
                bbox={"boxstyle": "round,pad=0.3", "facecolor": WARN, "edgecolor": "#c58a3c"},
            )
            continue
        x0, x1 = lane_x[start], lane_x[end]
        axes.add_patch(
            FancyArrowPatch(
                (x0, y),
                (x1, y),
                arrowstyle="-|>",
                mutation_scale=14,
                color=BLUE,
                linewidth=1.2,
                linestyle="--" if style == "answer" else "-",
            )
        )
        axes.text(
            (x0 + x1) / 2, y + 0.1, f"{number}. {label}", ha="center", fontsize=9.5, color=INK
        )
    axes.set_title(
        "One interaction, two batches: claim → lease → wait → late", fontsize=15, loc="left"
    )
    figure.tight_layout()
    figure.savefig(path, metadata=PNG_METADATA)
    plt.close(figure)


DIAGRAMS = {"data-flow.png": data_flow, "sequence-late.png": sequence}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT, help="directory for the PNGs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, draw in DIAGRAMS.items():
        draw(args.out / name)
        print(args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

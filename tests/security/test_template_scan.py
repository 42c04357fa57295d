"""checkov and cfn-lint on what would be deployed: dist/sam.json and its translated form.

For dev and prod, the packaged SAM template (tests.support.packaged, as `make package` makes
it) and the CloudFormation that aws-sam-translator makes of it are scanned by checkov, with
the repository's `.checkov.yaml`: every check passes but the ones skipped there, each with
its reason, and a skip that no longer matches anything fails too (it would hide a
regression). checkov lives in its own virtualenv, `.venv-scan` (its boto3 pin conflicts with
requirements.txt); `make test` creates it, so CI always runs this; without it the scan is
skipped, saying how to get it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.packaged import PROJECT, packaged_stage
from tests.support.translated import translate

STAGES = ("dev", "prod")
CHECKOV = PROJECT / ".venv-scan" / "bin" / "checkov"
CONFIG = PROJECT / ".checkov.yaml"
BIN = Path(sys.executable).parent


def skipped_with_reasons() -> dict[str, str]:
    """The skip list of .checkov.yaml: each id with the comment above it."""
    skips: dict[str, str] = {}
    reason: list[str] = []
    in_skips = False
    for line in CONFIG.read_text().splitlines():
        stripped = line.strip()
        if not line.startswith(" "):
            in_skips = stripped == "skip-check:"
            reason = []
            continue
        if in_skips and stripped.startswith("#"):
            reason.append(stripped.lstrip("# "))
        elif in_skips and stripped.startswith("- "):
            skips[stripped[2:].strip()] = " ".join(reason)
            reason = []
    return skips


@pytest.fixture(scope="module")
def templates(aws_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Path]]:
    """Both stages' SAM templates and their translations, written where checkov can read them."""
    root = tmp_path_factory.mktemp("scan")
    iam = boto3.Session(region_name="us-east-1").client("iam")
    paths = []
    for stage in STAGES:
        packaged = packaged_stage(stage)
        sam, cfn = root / f"sam-{stage}.json", root / f"cloudformation-{stage}.json"
        sam.write_text(json.dumps(packaged.template, indent=1))
        translated = translate(packaged, "s3://relay-artifacts/deployment.zip", iam)
        cfn.write_text(json.dumps(translated, indent=1))
        paths += [sam, cfn]
    yield paths


def run_checkov(arguments: list[str], cwd: Path) -> list[dict[str, Any]]:
    if not CHECKOV.exists():
        pytest.skip(
            "checkov is not installed: run `make test` (or `make .venv-scan/.installed`) to "
            "create .venv-scan from requirements-scan.txt"
        )
    result = subprocess.run(
        [str(CHECKOV), *arguments, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        check=False,
    )
    assert result.stdout.strip(), result.stderr[-2000:]
    report = json.loads(result.stdout)
    return report if isinstance(report, list) else [report]


def _files(templates: list[Path]) -> list[str]:
    return [argument for path in templates for argument in ("-f", str(path))]


@pytest.fixture(scope="module")
def checkov_report(templates: list[Path]) -> list[dict[str, Any]]:
    """checkov as a user runs it in this repository: with .checkov.yaml."""
    return run_checkov(["--config-file", str(CONFIG), *_files(templates)], PROJECT)


def test_every_skip_has_a_reason() -> None:
    skips = skipped_with_reasons()
    assert skips
    for check_id, reason in skips.items():
        assert re.fullmatch(r"CKV2?_AWS_\d+", check_id), check_id
        assert len(reason.split()) >= 8, f"{check_id}: say why it does not apply"


def test_checkov_passes_on_the_sam_template_and_its_cloudformation(
    checkov_report: list[dict[str, Any]], templates: list[Path]
) -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({Path(c['file_path']).name}): {c['check_name']}"
        for report in checkov_report
        for c in report["results"]["failed_checks"]
    ]
    assert failed == []
    scanned = {
        Path(c["file_path"]).name
        for report in checkov_report
        for c in report["results"]["passed_checks"]
    }
    assert scanned == {p.name for p in templates}  # every file was read and checked


def test_every_skipped_check_still_matches_something(templates: list[Path]) -> None:
    # checkov drops skipped checks from its report: run just them, away from .checkov.yaml.
    skips = skipped_with_reasons()
    report = run_checkov(
        ["--framework", "cloudformation", "--check", ",".join(skips), *_files(templates)],
        templates[0].parent,
    )
    failing = {c["check_id"] for r in report for c in r["results"]["failed_checks"]}
    assert set(skips) - failing == set(), "drop the skips that no longer match anything"


def test_cfn_lint_passes_on_the_translated_cloudformation(templates: list[Path]) -> None:
    translated = [p for p in templates if p.name.startswith("cloudformation-")]
    result = subprocess.run(
        [str(BIN / "cfn-lint"), *map(str, translated)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr

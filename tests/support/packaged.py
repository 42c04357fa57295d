"""`make package` on a copy of the project, once per stage and test session.

`chalice package` builds the Lambda zip (it needs the package index) and merges the template
rendered from the stack model. One copy serves every stage, so Chalice's dependency cache is
filled once; the result is cached, since test_package and the deploy rehearsal read the same
artefact.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from chalicelib.config import Settings
from scripts.packaging.template import stage_settings

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# What Chalice packages: the app, its library, its requirements and its stage config.
PROJECT_FILES = ("app.py", "requirements.txt", "chalicelib", "vendor", ".chalice")


def copy_project(destination: Path) -> Path:
    destination.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = PROJECT / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "deployments", "deployed")
            shutil.copytree(source, destination / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, destination / name)
    return destination


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # As the Makefile runs it: with a region and nothing else. Chalice itself imports app.py
    # with the stage's environment variables, so no RELAY_STAGE here. No AWS endpoint either.
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    for name in ("AWS_ENDPOINT_URL", "RELAY_STAGE"):
        env.pop(name, None)
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


class Packaged:
    """One stage's merge template and packaged SAM template (dist/sam.json)."""

    def __init__(self, project: Path, stage: str) -> None:
        self.stage = stage
        self.project = project
        self.merge_path = project / f"merge-template-{stage}.json"
        self.out = project / f"dist-{stage}"
        rendered = run(
            [
                str(BIN / "python"),
                "-m",
                "scripts.package",
                "--stage",
                stage,
                "--project-dir",
                str(project),
                "--out",
                str(self.merge_path),
            ],
            PROJECT,
        )
        assert rendered.returncode == 0, rendered.stderr
        packaged = run(
            [
                str(BIN / "chalice"),
                "package",
                "--stage",
                stage,
                "--merge-template",
                str(self.merge_path),
                str(self.out),
            ],
            project,
        )
        assert packaged.returncode == 0, packaged.stdout + packaged.stderr
        self.merge: dict[str, Any] = json.loads(self.merge_path.read_text())
        self.template: dict[str, Any] = json.loads((self.out / "sam.json").read_text())
        self.deployment_zip = self.out / "deployment.zip"
        self.settings: Settings = stage_settings(PROJECT, stage)

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            name: resource
            for name, resource in self.template["Resources"].items()
            if resource.get("Type") == resource_type
        }


_project: Path | None = None
_packaged: dict[str, Packaged] = {}


def packaged_stage(stage: str) -> Packaged:
    """The stage packaged from a copy of this checkout (made once per session)."""
    global _project
    if _project is None:
        root = Path(tempfile.mkdtemp(prefix="relay-package-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _project = copy_project(root / "project")
    if stage not in _packaged:
        _packaged[stage] = Packaged(_project, stage)
    return _packaged[stage]

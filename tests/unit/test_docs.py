"""README.md and docs/ stand alone: every file they link or name is in the repository, none
refers to documents outside it, and the diagrams are what their source draws."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
DOCUMENTS = [PROJECT / "README.md", *sorted((PROJECT / "docs").rglob("*.md"))]
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# `path/like/this.py` in backticks: a file the reader is sent to, so it must exist.
CODE_PATH = re.compile(r"`([A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)+\.(?:py|md|json|txt|png|toml))`")
# Files the stack writes when it runs (`make run`, `make package`): named, never committed.
GENERATED = (".local/", "dist/")


def relative(path: Path) -> str:
    return path.relative_to(PROJECT).as_posix()


@pytest.mark.parametrize("document", DOCUMENTS, ids=relative)
def test_every_link_points_at_a_file_of_the_repository(document: Path) -> None:
    missing = []
    for target in MARKDOWN_LINK.findall(document.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor of the same page
        if not (document.parent / target.split("#", 1)[0]).exists():
            missing.append(target)
    assert missing == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=relative)
def test_every_file_named_in_code_is_in_the_repository(document: Path) -> None:
    missing = [
        name
        for name in CODE_PATH.findall(document.read_text())
        if not name.startswith(GENERATED)
        and not (PROJECT / name).exists()
        and not (document.parent / name).exists()
    ]
    assert missing == []


def test_the_checks_see_links_and_code_paths() -> None:
    sample = "see [the DLQ](guides/dead-letter-queue.md) and `chalicelib/api/routes.py`; `x`"
    assert MARKDOWN_LINK.findall(sample) == ["guides/dead-letter-queue.md"]
    assert CODE_PATH.findall(sample) == ["chalicelib/api/routes.py"]


def test_every_guide_is_linked_from_the_guides_index() -> None:
    guides = PROJECT / "docs" / "guides"
    linked = set(MARKDOWN_LINK.findall((guides / "README.md").read_text()))
    assert {path.name for path in guides.glob("*.md")} - {"README.md"} <= linked


def test_the_diagrams_are_what_their_source_draws(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib draws the diagrams (make install)")
    source = PROJECT / "docs" / "img" / "diagrams.py"
    spec = importlib.util.spec_from_file_location("diagrams", source)
    assert spec is not None and spec.loader is not None
    diagrams = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diagrams)

    assert diagrams.main(["--out", str(tmp_path)]) == 0
    for name in diagrams.DIAGRAMS:
        drawn, committed = (
            (tmp_path / name).read_bytes(),
            (PROJECT / "docs/img" / name).read_bytes(),
        )
        assert drawn == committed, f"docs/img/{name} is stale: run `make diagrams` and commit it"

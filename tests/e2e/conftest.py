"""Shared by the end-to-end suites: screenshot directories, listed at the end of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

SCREENSHOT_DIRS = pytest.StashKey[list[Path]]()


@pytest.fixture
def screenshots(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A directory for this test's screenshots (artefacts), under its pytest tmp path."""
    directory = tmp_path / "screenshots"
    directory.mkdir()
    request.config.stash.setdefault(SCREENSHOT_DIRS, []).append(directory)
    return directory


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    for directory in config.stash.get(SCREENSHOT_DIRS, []):
        names = sorted(path.name for path in directory.glob("*.png"))
        if names:
            terminalreporter.write_line(f"screenshots in {directory}: {', '.join(names)}")

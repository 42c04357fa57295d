"""The operator console in a real browser: headless Debian Chromium, driven by Playwright.

Against the local stack as a user runs it (a subprocess, no traffic of its own): simulated
CXone traffic is put on its bus, then the page shows one interaction's timeline, walks the
time window page by page, and starts a re-drive to one consumer that it follows to `done`;
the re-driven messages reach that consumer's queue and no other. Screenshots of each step are
saved under the test's tmp directory and listed at the end of the run.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from chalicelib.formats import rfc3339, utc_now
from scripts.operations.console_proxy import console_server
from scripts.operations.replay import ApiClient
from scripts.traffic.simulate import TrafficProfile, generate_traffic, send_to_bus
from tests.support.local_stack import drain, running_stack

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# Debian's chromium as a test browser: no sandbox (containers run as root), no GPU, and none
# of the background traffic (updates, sync, QUIC probes) a fresh profile would start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Upper bounds for the page to get where it is going, on a loaded machine; never a pace.
PAGE_TIMEOUT_MS = 90_000
PAGE_SIZE = 10
REDRIVE_CONSUMER = "crm-updater"
LOCAL_STATUS_PATH = "/_local/status"
OTHER_CONSUMER = "analytics-sink"


@pytest.fixture(scope="module")
def playwright_api() -> Any:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no browser at {CHROMIUM}: install Debian's chromium "
            "(apt-get install chromium; .ci/run does) to run the console test"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (make install sets it up)"
    )
    return sync_api


@pytest.fixture
def browser_page(playwright_api: Any, tmp_path: Path) -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        # A persistent context is how Playwright takes a fresh --user-data-dir of our own.
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        page = context.new_page()
        failed: list[str] = []

        def answered(response: Any) -> None:
            # A 404 from _local/status is how the page learns it is not on the local stack.
            expected = response.status == 404 and response.url.endswith(LOCAL_STATUS_PATH)
            if response.status >= 400 and not expected:
                failed.append(f"{response.status} {response.url}")

        page.on("response", answered)
        page.on("pageerror", lambda error: failed.append(f"script error: {error}"))
        try:
            yield page
        finally:
            context.close()
        # Every request the page made was answered: no 403 for a favicon, no broken script.
        assert failed == []


def simulated_traffic() -> list[dict[str, Any]]:
    """Valid simulated CXone events of a few interactions, an hour ago, so each is long."""
    profile = TrafficProfile(
        duplicate_ratio=0.0, invalid_ratio=0.0, reorder_ratio=0.0, concurrent_interactions=3
    )
    start = utc_now() - timedelta(hours=1)
    return [item.event for item in generate_traffic(30, profile, seed=14, start=start)]


def wait_until_stored(api_url: str, interaction_id: str, count: int) -> list[dict[str, Any]]:
    """The interaction's stored events once all `count` are there (consumers see a message
    before the handler stores it, so the API lags the queues)."""
    deadline = time.monotonic() + 120
    while True:
        response = requests.get(f"{api_url}/interactions/{interaction_id}/events", timeout=10)
        response.raise_for_status()
        events = response.json()["events"]
        if len(events) >= count or time.monotonic() > deadline:
            assert len(events) == count, f"{len(events)} of {count} events stored"
            return events
        time.sleep(0.5)


def stage_or_state(event: dict[str, Any]) -> str:
    """What the console shows in its stage / state column."""
    return " / ".join(value for value in (event["stage"], event["state"]) if value)


def table_rows(page: Any, table_id: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"#{table_id} tbody tr",
        "rows => rows.map(row => [...row.cells].map(cell => cell.textContent))",
    )


def test_console_timeline_window_and_redrive_in_chromium(
    tmp_path: Path, browser_page: Any, screenshots: Path
) -> None:
    page = browser_page
    traffic = simulated_traffic()
    per_interaction = Counter(event["detail"]["interaction.id"] for event in traffic)
    chosen, chosen_count = per_interaction.most_common(1)[0]
    occurred = sorted(event["detail"]["timestamp"] for event in traffic)
    since = occurred[0]
    until = rfc3339(utc_now())

    with running_stack(tmp_path / "stack", duration=600) as (stack, _process):
        session = boto3.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name=stack["region"]
        )
        events = session.client("events", endpoint_url=stack["aws_endpoint_url"])
        sqs = session.client("sqs", endpoint_url=stack["aws_endpoint_url"])
        assert not send_to_bus(events, stack["event_bus_name"], traffic).failed
        stored = wait_until_stored(stack["api_url"], chosen, chosen_count)
        for name in stack["consumers"]:  # the first deliveries, read before the re-drive
            assert len(drain(sqs, stack["consumers"][name]["queue_url"], len(traffic), 60)) == len(
                traffic
            )

        # The page at /console/ (a trailing slash) still finds its script and the API.
        page.goto(f"{stack['api_url']}/console/")
        page.wait_for_selector("#live-section:not([hidden])")
        page.wait_for_selector(f"#redrive-consumers input[value='{REDRIVE_CONSUMER}']")
        # With the stack's consumers as boxes, the free-text field is gone.
        assert page.is_hidden("#redrive-consumer-names-label")

        # 1. One interaction's timeline, in order-key order.
        page.fill("#timeline-id", chosen)
        page.click("#timeline-form button[type=submit]")
        page.wait_for_selector(f"#timeline-message:text('{chosen_count} event(s) of {chosen}')")
        page.screenshot(path=str(screenshots / "1-timeline.png"), full_page=True)
        rows = table_rows(page, "timeline-table")
        assert [row[1] for row in rows] == [f"seq {e['sequence']}" for e in stored]
        assert [row[8] for row in rows] == [e["event_id"] for e in stored]
        assert [row[3] for row in rows] == [stage_or_state(e) for e in stored]

        # 2. The time window, paged: every event once, chronological, across pages.
        page.fill("#window-since", since)
        page.fill("#window-until", until)
        page.fill("#window-limit", str(PAGE_SIZE))
        page.click("#window-form button[type=submit]")
        seen: list[list[str]] = []
        pages = (len(traffic) + PAGE_SIZE - 1) // PAGE_SIZE
        for number in range(1, pages + 1):
            page.wait_for_selector(f"#window-page:text('page {number}')")
            seen += table_rows(page, "window-table")
            if number == 2:
                page.screenshot(path=str(screenshots / "2-window-page-2.png"), full_page=True)
            if number < pages:
                page.click("#window-next")
        assert page.is_disabled("#window-next")
        # PutEvents gives each entry an envelope id of its own: match on what was sent.
        assert len({row[7] for row in seen}) == len(seen)
        assert Counter((row[2], row[1]) for row in seen) == Counter(
            (e["detail"]["interaction.id"], e["detail"]["timestamp"]) for e in traffic
        )
        assert [row[1] for row in seen] == sorted(row[1] for row in seen)
        page.click("#window-previous")
        page.wait_for_selector(f"#window-page:text('page {pages - 1}')")

        # 3. A re-drive of the chosen interaction to one consumer, followed to `done`.
        page.fill("#redrive-interaction", chosen)
        page.check(f"#redrive-consumers input[value='{REDRIVE_CONSUMER}']")
        page.click("#redrive-start")
        page.wait_for_selector("#job-status:text-is('done')")
        page.screenshot(path=str(screenshots / "3-redrive-done.png"), full_page=True)
        assert page.text_content("#job-matched") == str(chosen_count)
        assert page.text_content("#job-published") == str(chosen_count)
        assert page.text_content("#redrive-message") == ""
        job_id = page.text_content("#job-id")

        redriven = drain(sqs, stack["consumers"][REDRIVE_CONSUMER]["queue_url"], chosen_count, 60)
        assert sorted(m["event_id"] for m in redriven) == sorted(e["event_id"] for e in stored)
        assert {(m["replay"], m["replay_job_id"]) for m in redriven} == {(True, job_id)}
        # The consumer not chosen gets nothing more.
        assert drain(sqs, stack["consumers"][OTHER_CONSUMER]["queue_url"], 1, 5) == []

        # 4. The same page through `python -m scripts.replay console` (unsigned here: the
        # local API has no auth), the way a deployed stage is opened.
        proxy = console_server(ApiClient(stack["api_url"]), 0)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            page.goto(f"http://127.0.0.1:{proxy.server_address[1]}/console")
            page.fill("#timeline-id", chosen)
            page.click("#timeline-form button[type=submit]")
            page.wait_for_selector(f"#timeline-message:text('{chosen_count} event(s) of {chosen}')")
            page.screenshot(path=str(screenshots / "4-through-the-proxy.png"), full_page=True)
            assert [row[8] for row in table_rows(page, "timeline-table")] == [
                e["event_id"] for e in stored
            ]
            # No live counters away from the local stack: the free-text consumers field.
            assert page.is_hidden("#live-section")
            assert page.is_visible("#redrive-consumer-names")
        finally:
            proxy.shutdown()
            proxy.server_close()

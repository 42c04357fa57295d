"""`python -m scripts.replay console`'s server and the console page it hands out, over HTTP.

The API behind the proxy is a recording HTTP server on 127.0.0.1 (it answers one JSON
document and keeps what it was sent): the test is about what the proxy forwards and signs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
import requests

from chalicelib.console import page
from scripts.operations.console_proxy import canonical_query, console_server
from scripts.operations.replay import ApiClient

Recorded = list[dict[str, Any]]


@pytest.fixture
def recording_api() -> Iterator[tuple[str, Recorded]]:
    recorded: Recorded = []

    class RecordingApi(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            recorded.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": self.rfile.read(length) if length else None,
                }
            )
            body = json.dumps({"events": [], "next_cursor": None}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _record

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordingApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api", recorded
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(recording_api: tuple[str, Recorded]) -> Iterator[str]:
    api_url, _ = recording_api
    credentials = boto3.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="console-test-secret"
    )
    client = ApiClient(api_url, region="us-east-1", session=credentials)
    server = console_server(client, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", ["/", "/console", "/console/"])
def test_the_page_names_its_script_by_an_absolute_path(proxy: str, path: str) -> None:
    response = requests.get(proxy + path, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == page.CONTENT_SECURITY_POLICY
    assert '<script src="/console/console.js">' in response.text
    script = requests.get(proxy + "/console/console.js", timeout=10)
    assert script.status_code == 200 and "API_BASE" in script.text


def test_page_calls_are_forwarded_signed_with_a_canonical_query(
    proxy: str, recording_api: tuple[str, Recorded]
) -> None:
    _, recorded = recording_api
    # What encodeURIComponent leaves bare (`!`, `(`, `)`, `*`) SigV4 escapes.
    response = requests.get(
        proxy
        + "/replay?since=2026-11-29T09%3A00%3A00Z&until=2026-11-29T10%3A00%3A00Z&cursor=a!b(c)*",
        timeout=10,
    )
    assert response.status_code == 200 and response.json() == {"events": [], "next_cursor": None}
    job = requests.post(proxy + "/replay/jobs", json={"consumers": ["crm-updater"]}, timeout=10)
    assert job.status_code == 200
    get, post = recorded
    assert get["path"] == (
        "/api/replay?since=2026-11-29T09%3A00%3A00Z&until=2026-11-29T10%3A00%3A00Z"
        "&cursor=a%21b%28c%29%2A"
    )
    assert post["method"] == "POST" and json.loads(post["body"]) == {"consumers": ["crm-updater"]}
    for request in recorded:
        authorization = request["headers"]["Authorization"]
        assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
        assert "/us-east-1/execute-api/aws4_request" in authorization
        assert "console-test-secret" not in json.dumps(request["headers"])


@pytest.mark.parametrize(
    "path", ["/events", "/replayx", "/interactions/a/b/events", "/favicon.ico", "/_local/status"]
)
def test_only_the_pages_routes_are_forwarded(
    proxy: str, recording_api: tuple[str, Recorded], path: str
) -> None:
    _, recorded = recording_api
    response = requests.get(proxy + path, timeout=10)
    assert response.status_code == 404
    assert "is not forwarded" in response.json()["Message"]
    assert recorded == []


@pytest.mark.parametrize(
    ("requested", "base"),
    [
        ("/console", "/"),
        ("/console/", "/"),
        ("/api/console", "/api/"),
        ("/api/console/", "/api/"),
        ("/", "/"),
        ('/x"y/console', "/x&quot;y/"),
    ],
)
def test_the_script_path_follows_the_requested_page_path(requested: str, base: str) -> None:
    rendered = page.html_page(requested).decode()
    assert f'<script src="{base}console/console.js"></script>' in rendered
    assert page.BASE_PLACEHOLDER not in rendered


def test_canonical_query_keeps_unreserved_characters_and_blank_values() -> None:
    assert canonical_query("a=x~y-z_.&b=&c=1+2") == "a=x~y-z_.&b=&c=1%202"

"""`python -m scripts.replay console`: the operator console on 127.0.0.1, its calls signed.

A deployed stage puts every route behind IAM (SigV4), which a browser cannot sign. This
server hands the browser the console's own files and forwards every other request the page
makes (GET and POST under the API's routes) to the API through `ApiClient`, which signs it
with the caller's AWS credentials and retries throttling. It listens on 127.0.0.1 only: a
request that reaches it is signed with your credentials, so nobody else may reach it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import requests
from rich.console import Console

from chalicelib.console import page

# Only what the page calls is forwarded: the proxy is no open door to the rest of the API.
FORWARDED_PATH = re.compile(r"^/(interactions/[^/]+/events|replay|replay/jobs(/[^/]+)?)$")
PAGE_PATHS = ("/", "/console", "/console/")
SCRIPT_PATH = "/console/console.js"
MAX_BODY_BYTES = 64 * 1024


def canonical_query(query: str) -> str:
    """The query re-encoded the way SigV4 canonicalizes it (RFC 3986, `~` unescaped).

    A browser's encodeURIComponent leaves `!'()*` bare where SigV4 escapes them; sent as the
    browser wrote them, the signature botocore computes would not be the one API Gateway
    checks (a 403). Re-encoding makes the two agree.
    """
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode(pairs, quote_via=quote, safe="-_.~")


def console_server(client: Any, port: int) -> ThreadingHTTPServer:
    """A server (not yet serving) for the console, forwarding through `client` (ApiClient)."""

    class ConsoleProxyHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in PAGE_PATHS:
                self._send(200, page.html_page(path), page.headers("console.html"))
            elif path == SCRIPT_PATH:
                self._send(200, page.read("console.js"), page.headers("console.js"))
            else:
                self._forward(None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._answer(413, {"Message": f"body over {MAX_BODY_BYTES} bytes"})
                return
            self._forward(self.rfile.read(length))

        def _send(self, status: int, body: bytes, headers: Mapping[str, str | list[str]]) -> None:
            self.send_response(status)
            for header, value in headers.items():
                self.send_header(header, value if isinstance(value, str) else ", ".join(value))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self, body: bytes | None) -> None:
            path, _, query = self.path.partition("?")
            if not FORWARDED_PATH.match(path):
                self._answer(404, {"Message": f"{path} is not forwarded"})
                return
            url = client.base_url + path + ("?" + canonical_query(query) if query else "")
            prepared = client.sign_raw(self.command, url, body)
            try:
                response = client.http.request(**prepared, timeout=30)
            except requests.RequestException as error:
                self._answer(502, {"Message": f"the API is not reachable: {type(error).__name__}"})
                return
            content_type = response.headers.get("Content-Type", "text/plain")
            self._send(response.status_code, response.content, {"Content-Type": content_type})

        def _answer(self, status: int, document: dict[str, Any]) -> None:
            body = json.dumps(document).encode("utf-8")
            self._send(status, body, {"Content-Type": "application/json"})

        def log_message(self, format: str, *args: Any) -> None:
            return  # request lines would carry query values into the terminal's scrollback

    return ThreadingHTTPServer(("127.0.0.1", port), ConsoleProxyHandler)


def serve_console(client: Any, port: int, console: Console) -> int:
    """Serve until Ctrl-C; 0 when stopped that way."""
    server = console_server(client, port)
    url = f"http://127.0.0.1:{server.server_address[1]}/console"
    signed = "signed with your AWS credentials" if client.region else "unsigned"
    console.print(f"operator console on {url} → {client.base_url} ({signed}); Ctrl-C stops it")
    thread = threading.Thread(target=server.serve_forever, name="console", daemon=True)
    thread.start()
    try:
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return 0

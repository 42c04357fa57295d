"""`python -m scripts.replay console`: the operator console on 127.0.0.1, its calls signed.

A deployed stage puts every route behind IAM (SigV4), which a browser cannot sign. This
server hands the browser the console's own files and forwards every other request the page
makes (GET and POST under the API's routes) to the API through `ApiClient`, which signs it
with the caller's AWS credentials and retries throttling. It listens on 127.0.0.1 only: a
request that reaches it is signed with your credentials, so nobody else may reach it.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from rich.console import Console

from chalicelib.console import page

# Only what the page calls is forwarded: the proxy is no open door to the rest of the API.
FORWARDED_PREFIXES = ("/interactions/", "/replay")
MAX_BODY_BYTES = 64 * 1024


def console_server(client: Any, port: int) -> ThreadingHTTPServer:
    """A server (not yet serving) for the console, forwarding through `client` (ApiClient)."""

    class ConsoleProxyHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/", "/console"):
                self._file("console.html")
            elif path == "/console/console.js":
                self._file("console.js")
            else:
                self._forward(None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._answer(413, {"Message": f"body over {MAX_BODY_BYTES} bytes"})
                return
            self._forward(self.rfile.read(length))

        def _file(self, name: str) -> None:
            body = page.read(name)
            self.send_response(200)
            for header, value in page.headers(name).items():
                self.send_header(header, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self, body: bytes | None) -> None:
            if not self.path.startswith(FORWARDED_PREFIXES):
                self._answer(404, {"Message": f"{self.path.split('?', 1)[0]} is not forwarded"})
                return
            url = client.base_url + self.path
            prepared = client.sign_raw(self.command, url, body)
            try:
                response = client.http.request(**prepared, timeout=30)
            except requests.RequestException as error:
                self._answer(502, {"Message": f"the API is not reachable: {type(error).__name__}"})
                return
            self.send_response(response.status_code)
            self.send_header("Content-Type", response.headers.get("Content-Type", "text/plain"))
            self.send_header("Content-Length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)

        def _answer(self, status: int, document: dict[str, Any]) -> None:
            body = json.dumps(document).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

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

"""The local stack's REST API server: Chalice's local server, quiet, plus the live counters.

`GET /_local/status` answers the stack's status snapshot as JSON, for the operator console's
live counters. It exists on this server alone: the deployed API has no such route, and the
console hides its counters panel when the route answers 404.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from chalice.local import ChaliceRequestHandler, LocalDevServer

STATUS_PATH = "/_local/status"

StatusSource = Callable[[], dict[str, Any]]


def handler_class(status: StatusSource) -> type[ChaliceRequestHandler]:
    class LocalStackRequestHandler(ChaliceRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != STATUS_PATH:
                super().do_GET()
                return
            body = json.dumps(status()).encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # One line per request on stderr would bury the live view: the stack logs none.
            return

    return LocalStackRequestHandler


class LocalApiServer:
    """Serves the Chalice app on 127.0.0.1:port in a daemon thread until `stop`."""

    def __init__(self, app: Any, config: Any, port: int, status: StatusSource) -> None:
        self._server = LocalDevServer(
            app, config, "127.0.0.1", port, handler_cls=handler_class(status)
        )
        self._thread = threading.Thread(
            target=self._server.server.serve_forever, name="api", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server.server_close()
        self._thread.join(10)

"""moto's server, with DynamoDB's atomic item writes: the AWS of the local stack and the tests.

DynamoDB applies every write of an item atomically, a conditional one included: of two
concurrent `ADD`s both count, and of two conditional writes racing for one lease one sees the
other's result. moto's threaded server handles each request on its own thread and reads,
checks and writes an item without a lock, so concurrent writes of one item can interleave:
eight threads making 800 conditional UpdateItems of one item kept 792 of them here. The relay
depends on exactly that atomicity (its leases, claims and job counters), so this server takes
DynamoDB's requests one at a time; the other services keep their threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# DynamoDB's JSON protocol names the operation in this header ("DynamoDB_20120810.PutItem").
DYNAMODB_TARGET_PREFIX = "DynamoDB_"


class DynamoDBOneAtATime:
    """WSGI middleware: a DynamoDB request is handled whole (response body included) while it
    holds one lock; every other request passes straight through."""

    def __init__(self, app: WSGIApplication) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET_PREFIX):
            return self._app(environ, start_response)
        with self._lock:
            return list(self._app(environ, start_response))


class LocalAwsServer(ThreadedMotoServer):
    """ThreadedMotoServer (same constructor, start and stop) serving through
    DynamoDBOneAtATime."""

    def _server_entry(self) -> None:
        # As ThreadedMotoServer._server_entry (moto is pinned), with the middleware around the
        # dispatcher.
        app = DynamoDBOneAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()

"""A local CXone stand-in: the token and connection endpoints `chalicelib.cxone.client` calls.

Used by the local stack and the tests. It speaks plain HTTP on 127.0.0.1 only (the client
allows http:// for loopback hosts alone). Endpoints:

- `GET /.well-known/openid-configuration` and `GET /.well-known/cxone-configuration?tenantId=`
- `POST /auth/token` (form or JSON body): `client_credentials`, or `password` with an access key
  as username/password; wrong credentials are 401 invalid_client, a wrong access key 400
  invalid_grant (as RFC 6749 says)
- `GET {connection_path}?name=` lists connections, `POST {connection_path}` creates one (201 with
  an `id`; 409 for a name already taken); both need a bearer token it issued, not expired, and,
  when `required_scope` is set, granted that scope (else 403)

Faults on demand: `fail_next(path, status, times, retry_after, delay)`; counters per path.
Run alone: `python -m scripts.cxone_standin --port 8765` (credentials from
CXONE_STANDIN_CLIENT_ID / CXONE_STANDIN_CLIENT_SECRET, never argv).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import logging
import os
import secrets
import signal
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("cxone_standin")

TOKEN_PATH = "/auth/token"
OPENID_PATH = "/.well-known/openid-configuration"
CXONE_CONFIG_PATH = "/.well-known/cxone-configuration"
DEFAULT_CONNECTION_PATH = "/eventbridge/v1/connections"
DEFAULT_TENANT_ID = "standin-tenant"


@dataclass
class _Fault:
    status: int | None  # None: answer normally (after the delay)
    retry_after: int | str | None
    delay: float


@dataclass(frozen=True)
class _IssuedToken:
    expires_at: float  # time.monotonic() deadline
    scopes: frozenset[str]


class CXoneStandIn:
    """A threaded HTTP server on 127.0.0.1 playing CXone's login and connection API."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        token_ttl_seconds: int = 3600,
        *,
        access_key_id: str | None = None,
        access_key_secret: str | None = None,
        tenant_id: str = DEFAULT_TENANT_ID,
        connection_path: str = DEFAULT_CONNECTION_PATH,
        required_scope: str | None = None,
        port: int = 0,
    ) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.token_ttl_seconds = token_ttl_seconds
        self.access_key_id = access_key_id
        self._access_key_secret = access_key_secret
        self.tenant_id = tenant_id
        self.connection_path = connection_path
        self.required_scope = required_scope
        self._port = port
        self._lock = threading.Lock()
        self._faults: dict[str, deque[_Fault]] = {}
        self._tokens: dict[str, _IssuedToken] = {}
        self.connections: dict[str, dict[str, Any]] = {}  # by name
        self.request_counts: Counter[str] = Counter()  # by path, query excluded
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"CXoneStandIn(client_id={self.client_id!r}, base_url={self._url_or_none()!r})"

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> CXoneStandIn:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", self._port), _handler_for(self))
        server.daemon_threads = True  # a slow fault must not block stop()
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> CXoneStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stand-in is not running: call start() first")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _url_or_none(self) -> str | None:
        return self.base_url if self._server is not None else None

    # ----------------------------------------------------------------- test controls

    def fail_next(
        self,
        path: str,
        status: int | None,
        times: int = 1,
        retry_after: int | str | None = None,
        delay: float = 0,
    ) -> None:
        """Answer the next `times` requests to `path` with `status` (None: normally) after `delay`.

        `retry_after` becomes the Retry-After header (seconds or an HTTP date).
        """
        with self._lock:
            queue = self._faults.setdefault(path, deque())
            for _ in range(times):
                queue.append(_Fault(status, retry_after, delay))

    def count(self, path: str) -> int:
        with self._lock:
            return self.request_counts[path]

    def issued_tokens(self) -> list[str]:
        """Every token value this stand-in has issued (tests look for leaks of them)."""
        with self._lock:
            return list(self._tokens)

    def expire_tokens(self) -> None:
        """Make every issued token expired, as if an hour had passed."""
        with self._lock:
            self._tokens = {
                value: _IssuedToken(0.0, issued.scopes) for value, issued in self._tokens.items()
            }

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            self.request_counts[path] += 1
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    # ----------------------------------------------------------------- endpoints

    def openid_configuration(self) -> dict[str, Any]:
        return {
            "issuer": self.base_url,
            "token_endpoint": self.base_url + TOKEN_PATH,
            "grant_types_supported": ["client_credentials", "password"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        }

    def cxone_configuration(self, tenant_id: str | None) -> tuple[int, dict[str, Any]]:
        if tenant_id != self.tenant_id:
            return 404, {"error": "tenant_not_found"}
        return 200, {
            "tenantId": self.tenant_id,
            "area": "local",
            "api_endpoint": self.base_url,
            "auth_endpoint": self.base_url,
            "ui_endpoint": self.base_url,
        }

    def issue_token(
        self, fields: dict[str, str], basic: tuple[str, str] | None
    ) -> tuple[int, dict[str, Any]]:
        client_id = fields.get("client_id") or (basic[0] if basic else None)
        client_secret = fields.get("client_secret") or (basic[1] if basic else None)
        grant_type = fields.get("grant_type")
        if grant_type == "client_credentials":
            if not self._client_matches(client_id, client_secret):
                return 401, {"error": "invalid_client"}
        elif grant_type == "password":
            # A back-end app may also present its client; when it does, it must be right.
            if client_id is not None and not self._client_matches(client_id, client_secret):
                return 401, {"error": "invalid_client"}
            if self.access_key_id is None or not (
                _same(fields.get("username"), self.access_key_id)
                and _same(fields.get("password"), self._access_key_secret)
            ):
                return 400, {"error": "invalid_grant"}
        else:
            return 400, {"error": "unsupported_grant_type"}
        scopes = frozenset((fields.get("scope") or "").split())
        value = "standin-" + secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[value] = _IssuedToken(time.monotonic() + self.token_ttl_seconds, scopes)
        body: dict[str, Any] = {
            "access_token": value,
            "token_type": "bearer",
            "expires_in": self.token_ttl_seconds,
        }
        if scopes:
            body["scope"] = " ".join(sorted(scopes))
        return 200, body

    def _client_matches(self, client_id: str | None, client_secret: str | None) -> bool:
        return _same(client_id, self.client_id) and _same(client_secret, self._client_secret)

    def authorize(self, authorization: str | None) -> tuple[int, dict[str, Any]] | None:
        """None when the bearer token may call the connection API, else the refusal."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return 401, {"error": "missing_token"}
        value = authorization.split(" ", 1)[1].strip()
        with self._lock:
            issued = self._tokens.get(value)
        if issued is None or issued.expires_at <= time.monotonic():
            return 401, {"error": "invalid_token"}
        if self.required_scope and self.required_scope not in issued.scopes:
            return 403, {"error": "insufficient_scope"}
        return None

    def list_connections(self, name: str | None) -> dict[str, Any]:
        with self._lock:
            found = [c for c in self.connections.values() if name is None or c["name"] == name]
        return {"connections": found}

    def create_connection(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            return 400, {"error": "invalid_request", "message": "name is required"}
        missing = [
            key
            for key in ("awsAccountId", "awsRegion", "eventBusName", "eventTypes")
            if key not in body
        ]
        if missing:
            return 400, {"error": "invalid_request", "missing": missing}
        with self._lock:
            if body["name"] in self.connections:
                return 409, {"error": "conflict"}
            connection = {**body, "id": str(uuid.uuid4()), "status": "ACTIVE"}
            self.connections[body["name"]] = connection
        return 201, connection


def _same(given: str | None, expected: str | None) -> bool:
    if given is None or expected is None:
        return False
    return secrets.compare_digest(given.encode(), expected.encode())


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header.split(" ", 1)[1]).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return user, password


def _handler_for(stand_in: CXoneStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as requests.Session uses it

        def log_message(self, format: str, *args: Any) -> None:
            # Paths only (the default format would also write to stderr on every request).
            log.debug("%s %s", self.command, urlsplit(self.path).path)

        def do_GET(self) -> None:
            self._dispatch()

        def do_POST(self) -> None:
            self._dispatch()

        def _dispatch(self) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            query = {key: values[0] for key, values in parse_qs(parts.query).items()}
            raw = self._read_body()
            fault = stand_in._take_fault(path)
            if fault is not None:
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.status is not None:
                    headers = {}
                    if fault.retry_after is not None:
                        headers["Retry-After"] = str(fault.retry_after)
                    self._send(fault.status, {"error": "injected_fault"}, headers)
                    return
            try:
                status, body = self._route(path, query, raw)
            except ValueError:
                status, body = 400, {"error": "invalid_request", "message": "body is not JSON"}
            self._send(status, body)

        def _route(
            self, path: str, query: dict[str, str], raw: bytes
        ) -> tuple[int, dict[str, Any]]:
            if self.command == "GET" and path == OPENID_PATH:
                return 200, stand_in.openid_configuration()
            if self.command == "GET" and path == CXONE_CONFIG_PATH:
                return stand_in.cxone_configuration(query.get("tenantId"))
            if path == TOKEN_PATH:
                if self.command != "POST":
                    return 405, {"error": "method_not_allowed"}
                return stand_in.issue_token(
                    self._fields(raw), _basic_auth(self.headers.get("Authorization"))
                )
            if path == stand_in.connection_path:
                refusal = stand_in.authorize(self.headers.get("Authorization"))
                if refusal is not None:
                    return refusal
                if self.command == "GET":
                    return 200, stand_in.list_connections(query.get("name"))
                return stand_in.create_connection(json.loads(raw or b"null"))
            return 404, {"error": "not_found"}

        def _fields(self, raw: bytes) -> dict[str, str]:
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("application/json"):
                body = json.loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("token body must be an object")
                return {key: str(value) for key, value in body.items()}
            return {key: values[0] for key, values in parse_qs(raw.decode()).items()}

        def _read_body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(
            self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            payload = json.dumps(body).encode()
            try:
                self.send_response(status, HTTPStatus(status).phrase)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Cache-Control", "no-store")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (its timeout fired during a slow fault): nothing to answer.
                self.close_connection = True

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.cxone_standin", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--token-ttl", type=int, default=3600, help="token lifetime, seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    stand_in = CXoneStandIn(
        client_id=os.environ.get("CXONE_STANDIN_CLIENT_ID", "local-client"),
        client_secret=os.environ.get("CXONE_STANDIN_CLIENT_SECRET", "local-secret"),
        token_ttl_seconds=args.token_ttl,
        access_key_id=os.environ.get("CXONE_STANDIN_ACCESS_KEY_ID"),
        access_key_secret=os.environ.get("CXONE_STANDIN_ACCESS_KEY_SECRET"),
        port=args.port,
    )
    stopped = threading.Event()
    # SIGTERM (how a parent such as the local stack stops it) ends it as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with stand_in:
        print(f"CXone stand-in listening on {stand_in.base_url} (Ctrl-C stops it)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while not stopped.wait(0.5):
                pass
    print("CXone stand-in stopped", flush=True)
    return 0

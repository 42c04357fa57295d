"""The test environment's constants and its one port picker, for fixtures and suites alike
(conftest.py holds fixtures only: no test module imports it).
"""

from __future__ import annotations

import socket

REGION = "us-east-1"
# The account every test stage runs as (RELAY_ACCOUNT_ID skips the STS call at cold start).
ACCOUNT_ID = "123456789012"
# The variables the session's moto server sets, and restores when it stops.
AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port

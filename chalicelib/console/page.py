"""The operator console's files: one HTML page and its plain JavaScript, no build step.

Served by the REST API (`GET /console`, `GET /console/console.js`), by the local stack, and by
`python -m scripts.replay console` on 127.0.0.1 (which signs the page's API calls: a browser
cannot sign SigV4). The page calls the API with relative URLs, so it works under a deployed
stage's path prefix (`/api/console`) and on 127.0.0.1 alike.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
# The page's files by the name the page asks for, with their media types.
FILES = {
    "console.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
# The page, its script and its API calls only come from where the page came from.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


@cache
def read(name: str) -> bytes:
    if name not in FILES:
        raise KeyError(name)
    return (STATIC / name).read_bytes()


def headers(name: str) -> dict[str, str]:
    return {
        "Content-Type": FILES[name],
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }

"""The operator console's files: one HTML page and its plain JavaScript, no build step.

Served by the REST API (`GET /console`, `GET /console/console.js`), by the local stack, and by
`python -m scripts.replay console` on 127.0.0.1 (which signs the page's API calls: a browser
cannot sign SigV4). The page names its script by an absolute path, worked out from the path
the page was asked for, and the script finds the API next to itself: so the console works
under a deployed stage's path prefix (`/api/console`), behind a custom domain's base path and
with or without a trailing slash (`/console/`), where relative URLs would miss the routes.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
# The page's files by the name the page asks for, with their media types.
FILES = {
    "console.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}
PAGE_NAME = "console"
# Where console.html names its script's base path.
BASE_PLACEHOLDER = "{{base}}"
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


def base_path(request_path: str) -> str:
    """The API's base path, with a trailing slash, for the path the page was requested at.

    `/console` and `/console/` → `/`; `/api/console` → `/api/`; anything else (a page
    served at `/`) → `/`.
    """
    trimmed = request_path.split("?", 1)[0].rstrip("/")
    if trimmed.endswith("/" + PAGE_NAME):
        return trimmed[: -len(PAGE_NAME)]
    return "/"


def html_page(request_path: str) -> bytes:
    """console.html with its script named under the API's base path."""
    base = html.escape(base_path(request_path), quote=True)
    return read("console.html").replace(BASE_PLACEHOLDER.encode(), base.encode("utf-8"))


def headers(name: str) -> dict[str, str | list[str]]:
    """The response headers of one of the console's files (Chalice's header type)."""
    return {
        "Content-Type": FILES[name],
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-cache",
    }

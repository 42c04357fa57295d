"""`GET /console` and its script, as a Chalice blueprint (app.py registers `console_api`).

Behind IAM like every other route when deployed (open it through `python -m scripts.replay
console`, which signs); unauthenticated on 127.0.0.1 like the rest of the local stack.
"""

from __future__ import annotations

from chalice.app import Response

from chalicelib.api.blueprint import IAM, RelayBlueprint
from chalicelib.console import page

console_api = RelayBlueprint(__name__)


@console_api.route("/console", methods=["GET"], authorizer=IAM)
def console_page() -> Response:
    # API Gateway's requestContext.path is the path as the browser asked for it, stage prefix
    # included (`/api/console`); chalice local sets it too.
    request = console_api.current_request
    requested = str((request.context or {}).get("path") or "/console") if request else "/console"
    return Response(
        body=page.html_page(requested).decode("utf-8"), headers=page.headers("console.html")
    )


@console_api.route("/console/console.js", methods=["GET"], authorizer=IAM)
def console_script() -> Response:
    return Response(
        body=page.read("console.js").decode("utf-8"), headers=page.headers("console.js")
    )

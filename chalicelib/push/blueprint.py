"""`POST /events` as a Chalice blueprint (app.py registers `push_api`).

No authorizer, on purpose: push sources (CXone Studio REST actions, webhooks) cannot sign SigV4,
so the function checks the HMAC signature itself (chalicelib.push.handler), locally and
deployed alike.
`raw_body` is handed over untouched: the signature covers the exact bytes received.
"""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib.tracing import traced


def build_push_blueprint() -> Blueprint:
    """A new blueprint holding the route.

    Chalice 1.34 consumes a blueprint's route options when it registers them (it pops
    `methods`, `content_types`, … from the stored dict), so registering one blueprint object
    on a second app silently turns POST into GET. An app that is not app.py (a test's) takes
    a blueprint of its own from here.
    """
    blueprint = Blueprint(__name__)

    @blueprint.route("/events", methods=["POST"], content_types=["application/json"])
    @traced
    def post_events() -> Response:
        # Imported on first use: only the API function pays for it (see app.py).
        from chalicelib.push.handler import handle_push
        from chalicelib.runtime import get_runtime

        request = blueprint.current_request
        outcome = handle_push(request.headers, request.raw_body, get_runtime())
        return Response(
            body=outcome.body,
            status_code=outcome.status_code,
            headers={"Content-Type": "application/json"},
        )

    return blueprint


push_api = build_push_blueprint()

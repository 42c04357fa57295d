"""The REST replay API and the replay worker, as a Chalice blueprint (app.py registers it).

Wiring only: each route hands over to chalicelib.api.routes, imported on first request so
that functions serving no route never load it. Routes parse the parameters (api_params), run
the query or job call and shape the response. Every bad parameter, cursor or body is a 400
{"Code": "BadRequestError", "Message": "<parameter>: <what is wrong>"}; nothing internal
(table keys, lease data, stack traces) is ever in a response. Deployed stages put every
route behind IAM (SigV4); `chalice local` and chalice.test.Client ignore authorizers, which
is how the local stack serves them on 127.0.0.1 without auth.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from chalice.app import Blueprint, IAMAuthorizer, Request, Response, SQSEvent

from chalicelib.config import names_from_environment
from chalicelib.telemetry import in_lambda_context
from chalicelib.timing import EVENT_SOURCES
from chalicelib.tracing import traced

if TYPE_CHECKING:  # the routes' modules load on first request, not at import
    from chalicelib.replay.jobs import JobView


def _fresh(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {key: dict(value) if isinstance(value, dict) else value for key, value in kwargs.items()}


class RelayBlueprint(Blueprint):
    """A Blueprint that registers the same way into every app it is given.

    Chalice's route registration pops the route's options (methods, authorizer, content
    types) out of the kwargs a blueprint keeps, so a plain Blueprint registered into a second
    app (app.py's, then a test's) would get GET-only routes without their authorizer. Here the
    kwargs are put back before every registration.
    """

    def _register_handler(
        self,
        handler_type: str,
        name: str,
        user_handler: Any,
        wrapped_handler: Any,
        kwargs: dict[str, Any],
        options: dict[Any, Any] | None = None,
    ) -> None:
        pristine = _fresh(kwargs)
        super()._register_handler(
            handler_type, name, user_handler, wrapped_handler, kwargs, options
        )
        deferred = self._deferred_registrations.pop()  # Chalice's closure over `kwargs`

        def register(app: Any, app_options: dict[Any, Any]) -> None:
            kwargs.clear()
            kwargs.update(_fresh(pristine))
            deferred(app, app_options)

        self._deferred_registrations.append(register)


api = RelayBlueprint(__name__)
IAM = IAMAuthorizer()


# The request being served. `Blueprint.current_request` is the request of the last app the
# blueprint joined, which is the wrong app (and a stale request) once it has joined several.
_serving: ContextVar[Request | None] = ContextVar("relay_api_request", default=None)


@api.middleware("http")
def _remember_request(event: Request, get_response: Callable[[Request], Response]) -> Response:
    token = _serving.set(event)
    try:
        return get_response(event)
    finally:
        _serving.reset(token)


def _request() -> Request:
    return _serving.get() or api.current_request


@api.route("/interactions/{interaction_id}/events", methods=["GET"], authorizer=IAM)
@traced
def interaction_events(interaction_id: str) -> dict[str, Any] | Response:
    """One interaction's stored events, in order-key order."""
    from chalicelib.api import routes as api_routes

    return api_routes.interaction_events(_request(), interaction_id)


@api.route("/replay", methods=["GET"], authorizer=IAM)
@traced
def replay_listing() -> dict[str, Any] | Response:
    """Stored events with since <= occurred_at < until, chronological."""
    from chalicelib.api import routes as api_routes

    return api_routes.replay_listing(_request())


@api.route("/replay/jobs", methods=["POST"], authorizer=IAM)
@traced
def start_replay_job() -> Response:
    """Record a re-drive job and queue it; the worker does the publishing."""
    from chalicelib.api import routes as api_routes

    return api_routes.start_replay_job(_request())


@api.route("/replay/jobs/{job_id}", methods=["GET"], authorizer=IAM)
@traced
def replay_job_status(job_id: str) -> JobView | Response:
    from chalicelib.api import routes as api_routes

    return api_routes.replay_job_status(job_id)


@api.on_sqs_message(
    queue=names_from_environment().replay_queue,
    batch_size=EVENT_SOURCES["replay_worker"].batch_size,
    name="replay_worker",
)
@in_lambda_context
@traced
def replay_worker(event: SQSEvent) -> None:
    """Run the job named by each message (batch size 1: one job per invocation)."""
    from chalicelib.api import routes as api_routes

    api_routes.replay_worker(event)

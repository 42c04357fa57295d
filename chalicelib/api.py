"""The REST replay API and the replay worker, as a Chalice blueprint (app.py registers it).

Routes are thin: parse the parameters (api_params), run the query or job call, shape the
response. Every bad parameter, cursor or body is a 400 {"Code": "BadRequestError", "Message":
"<parameter>: <what is wrong>"}; nothing internal (table keys, lease data, stack traces) is
ever in a response. Deployed stages put every route behind IAM (SigV4); `chalice local`
and chalice.test.Client ignore authorizers, which is how the local stack serves them on
127.0.0.1 without auth.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote

from chalice import BadRequestError, Blueprint, IAMAuthorizer, NotFoundError, Response
from chalice.app import Request, SQSEvent

from chalicelib import queries, replay_jobs
from chalicelib.api_params import (
    ParameterError,
    parse_job_request,
    parse_timeline,
    parse_window,
)
from chalicelib.config import names_from_environment
from chalicelib.cursors import CursorError, cursor_key, decode_cursor, encode_cursor
from chalicelib.profiles.common import shown
from chalicelib.runtime import Runtime, get_runtime

logger = logging.getLogger(__name__)


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

TIMELINE_CURSOR = "timeline"
WINDOW_CURSOR = "window"

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


def _query_values() -> dict[str, list[str]]:
    """The query string as {name: [values]}, so a repeated parameter can be refused."""
    params = _request().query_params
    if not params:
        return {}
    return {name: params.getlist(name) for name in params}


def _bad_request(error: Exception) -> BadRequestError:
    return BadRequestError(str(error))


def _cursor_position(
    runtime: Runtime, cursor: str | None, kind: str, filters: dict[str, Any]
) -> dict[str, Any] | None:
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor, kind=kind, filters=filters, key=cursor_key(runtime.settings))
    except CursorError as error:
        raise BadRequestError(f"cursor: {error}") from None


def _next_cursor(
    runtime: Runtime, position: dict[str, Any] | None, kind: str, filters: dict[str, Any]
) -> str | None:
    if position is None:
        return None
    return encode_cursor(position, kind=kind, filters=filters, key=cursor_key(runtime.settings))


@api.route("/interactions/{interaction_id}/events", methods=["GET"], authorizer=IAM)
def interaction_events(interaction_id: str) -> dict[str, Any]:
    """One interaction's stored events, in order-key order."""
    # API Gateway (REST) and Chalice hand over path parameters still percent-encoded
    # (aws/chalice#511); interaction ids may hold '/', spaces or non-ASCII characters.
    interaction_id = unquote(interaction_id)
    try:
        params = parse_timeline(interaction_id, _query_values())
    except ParameterError as error:
        raise _bad_request(error) from None
    runtime = get_runtime()
    filters = params.cursor_filters()
    position = _cursor_position(runtime, params.cursor, TIMELINE_CURSOR, filters)
    after = None
    if position is not None:
        try:
            after = queries.TimelinePosition.from_json(position)
        except ValueError:
            raise BadRequestError("cursor: is not a timeline cursor") from None
    page = queries.timeline(
        runtime.dynamodb,
        runtime.settings.names.events_table,
        params.interaction_id,
        limit=params.limit,
        after=after,
        max_bytes=queries.RESPONSE_MAX_BYTES,
    )
    next_position = page.next_position.to_json() if page.next_position else None
    return {
        "events": page.events,
        "next_cursor": _next_cursor(runtime, next_position, TIMELINE_CURSOR, filters),
    }


@api.route("/replay", methods=["GET"], authorizer=IAM)
def replay_listing() -> dict[str, Any]:
    """Stored events with since <= occurred_at < until, chronological."""
    runtime = get_runtime()
    try:
        params = parse_window(_query_values(), runtime.settings)
    except ParameterError as error:
        raise _bad_request(error) from None
    filters = params.cursor_filters()
    position = _cursor_position(runtime, params.cursor, WINDOW_CURSOR, filters)
    after = None
    if position is not None:
        after = position.get("after")
        if not isinstance(after, str) or "#" not in after:
            raise BadRequestError("cursor: is not a replay listing cursor")
    page = queries.window(
        runtime.dynamodb,
        runtime.settings.names.events_table,
        queries.WindowFilter(
            since=params.since,
            until=params.until,
            detail_type=params.detail_type,
            interaction_id=params.interaction_id,
        ),
        limit=params.limit,
        after=after,
        max_bytes=queries.RESPONSE_MAX_BYTES,
    )
    next_position = None
    if not page.exhausted:
        next_position = {"after": page.last_examined or after}
    return {
        "events": [event.message for event in page.events],
        "next_cursor": _next_cursor(runtime, next_position, WINDOW_CURSOR, filters),
    }


@api.route("/replay/jobs", methods=["POST"], authorizer=IAM)
def start_replay_job() -> Response:
    """Record a re-drive job and queue it; the worker does the publishing."""
    runtime = get_runtime()
    try:
        request = parse_job_request(_request().raw_body, runtime.settings)
    except ParameterError as error:
        raise _bad_request(error) from None
    try:
        job = replay_jobs.start_job(runtime, request)
    except Exception:
        logger.exception("could not start a replay job")
        return Response(
            body={
                "Code": "ServiceUnavailable",
                "Message": "the job could not be queued; try again shortly",
            },
            status_code=503,
        )
    return Response(
        body={"job_id": job.job_id, "status": job.status},
        status_code=202,
        headers={"Location": f"/replay/jobs/{job.job_id}"},
    )


@api.route("/replay/jobs/{job_id}", methods=["GET"], authorizer=IAM)
def replay_job_status(job_id: str) -> dict[str, Any]:
    runtime = get_runtime()
    job = replay_jobs.get_job(runtime.dynamodb, runtime.settings.names.jobs_table, job_id)
    if job is None:
        raise NotFoundError(f"job_id: no replay job {shown(job_id)}")
    return job.view()


@api.on_sqs_message(queue=names_from_environment().replay_queue, batch_size=1, name="replay_worker")
def replay_worker(event: SQSEvent) -> None:
    """Run the job named by each message (batch size 1: one job per invocation)."""
    runtime = get_runtime()
    remaining_ms = getattr(event.context, "get_remaining_time_in_millis", None)
    for record in event:
        job_id = replay_jobs.job_id_from_message(record.body)
        if job_id is None:
            # Retrying cannot make it a job message: drop it, loudly.
            logger.error("replay worker: message is not a job message; dropped")
            continue
        outcome = replay_jobs.run_job(runtime, job_id, remaining_ms=remaining_ms)
        logger.info("replay job %s: %s", job_id, outcome.value)

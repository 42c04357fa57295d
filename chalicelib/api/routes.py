"""What the REST routes do (chalicelib/api.py wires them): parse the parameters, run the
query or job call, shape the response. Imported on first request, so functions that serve no
route (ingest, refresh_token) never load it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote

from chalice.app import BadRequestError, NotFoundError, Request, Response, SQSEvent

from chalicelib.api.cursors import CursorError, cursor_key, decode_cursor, encode_cursor
from chalicelib.api.params import parse_job_request, parse_timeline, parse_window
from chalicelib.aws import AwsFailure, error_code
from chalicelib.errors import BadRequest, DependencyUnavailable, NotFound
from chalicelib.formats import shown
from chalicelib.replay import jobs as replay_jobs
from chalicelib.runtime import Runtime, get_runtime
from chalicelib.store import queries
from chalicelib.store.layout import StoreTables
from chalicelib.telemetry import logger

TIMELINE_CURSOR = "timeline"
WINDOW_CURSOR = "window"

P = ParamSpec("P")
R = TypeVar("R")


def _unavailable(message: str) -> Response:
    return Response(
        body={"Code": "ServiceUnavailable", "Message": message},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def answered(route: Callable[P, R]) -> Callable[P, R | Response]:
    """The one boundary of the routes, by error family: a BadRequest (a parameter, the body,
    the cursor) is a 400 saying what is wrong, a NotFound a 404, a dependency that failed a
    503 saying so (an AWS failure logged with its error code), never a 500 and never a message
    of AWS's."""

    @functools.wraps(route)
    def answer(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        try:
            return route(*args, **kwargs)
        except BadRequest as error:
            # Chalice's own error renders the body {"Code": "BadRequestError", "Message": ...}.
            raise BadRequestError(str(error)) from None
        except NotFound as error:
            raise NotFoundError(str(error)) from None
        except DependencyUnavailable as error:
            return _unavailable(str(error))
        except AwsFailure as error:
            logger.warning(
                "API dependency failed",
                extra={"route": route.__name__, "error_code": error_code(error)},
            )
            return _unavailable("a service this API depends on failed; try again shortly")

    return answer


def _query_values(request: Request) -> dict[str, list[str]]:
    """The query string as {name: [values]}, so a repeated parameter can be refused."""
    params = request.query_params
    if not params:
        return {}
    return {name: params.getlist(name) for name in params}


def _cursor_key(runtime: Runtime) -> bytes:
    return cursor_key(runtime.secretsmanager, runtime.settings.names.cursor_key_secret)


def _cursor_position(
    runtime: Runtime, cursor: str | None, kind: str, filters: dict[str, Any]
) -> dict[str, Any] | None:
    if cursor is None:
        return None
    return decode_cursor(
        cursor,
        kind=kind,
        filters=filters,
        key=lambda: _cursor_key(runtime),
        ttl_seconds=runtime.settings.cursor_ttl_seconds,
    )


def _next_cursor(
    runtime: Runtime, position: dict[str, Any] | None, kind: str, filters: dict[str, Any]
) -> str | None:
    if position is None:
        return None
    return encode_cursor(position, kind=kind, filters=filters, key=_cursor_key(runtime))


@answered
def interaction_events(request: Request, interaction_id: str) -> dict[str, Any]:
    """One interaction's stored events, in order-key order."""
    # API Gateway (REST) and Chalice hand over path parameters still percent-encoded
    # (aws/chalice#511); interaction ids may hold '/', spaces or non-ASCII characters.
    interaction_id = unquote(interaction_id)
    params = parse_timeline(interaction_id, _query_values(request))
    runtime = get_runtime()
    filters = params.cursor_filters()
    position = _cursor_position(runtime, params.cursor, TIMELINE_CURSOR, filters)
    after = None
    if position is not None:
        try:
            after = queries.TimelinePosition.from_json(position)
        except ValueError:
            raise CursorError("is not a timeline cursor") from None
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


@answered
def replay_listing(request: Request) -> dict[str, Any]:
    """Stored events with since <= occurred_at < until, chronological."""
    runtime = get_runtime()
    params = parse_window(_query_values(request), runtime.settings)
    filters = params.cursor_filters()
    position = _cursor_position(runtime, params.cursor, WINDOW_CURSOR, filters)
    after = None
    if position is not None:
        after = position.get("after")
        if not isinstance(after, str) or "#" not in after:
            raise CursorError("is not a replay listing cursor")
    page = queries.window(
        runtime.dynamodb,
        StoreTables.of(runtime.settings),
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


@answered
def start_replay_job(request: Request) -> Response:
    """Record a re-drive job and queue it; the worker does the publishing."""
    runtime = get_runtime()
    job_request = parse_job_request(request.raw_body, runtime.settings)
    try:
        job = replay_jobs.start_job(runtime, job_request)
    except DependencyUnavailable as error:
        # The jobs module names the AWS error for the log; the caller gets no AWS message.
        logger.warning("replay job not started", extra={"reason": str(error)})
        raise DependencyUnavailable("the job could not be queued; try again shortly") from None
    return Response(
        body={"job_id": job.job_id, "status": job.status},
        status_code=202,
        headers={"Location": f"/replay/jobs/{job.job_id}"},
    )


@answered
def replay_job_status(job_id: str) -> replay_jobs.JobView:
    runtime = get_runtime()
    job = replay_jobs.get_job(runtime.dynamodb, runtime.settings.names.jobs_table, job_id)
    if job is None:
        raise NotFound(f"job_id: no replay job {shown(job_id)}")
    return job.view()


def replay_worker(event: SQSEvent) -> None:
    """Run the job named by each message (batch size 1: one job per invocation).

    The worker's one boundary: a DependencyUnavailable (the job's lease is held elsewhere, a
    table or queue failed) is logged and raised again, so the message comes back and the job
    resumes from its checkpoint; the jobs module settles every other outcome itself.
    """
    runtime = get_runtime()
    remaining_ms = getattr(event.context, "get_remaining_time_in_millis", None)
    for record in event:
        job_id = replay_jobs.job_id_from_message(record.body)
        if job_id is None:
            # Retrying cannot make it a job message: drop it, loudly.
            logger.error("replay worker: message is not a job message; dropped")
            continue
        try:
            outcome = replay_jobs.run_job(runtime, job_id, remaining_ms=remaining_ms)
        except DependencyUnavailable as error:
            logger.warning(
                "replay job deferred; its message comes back",
                extra={"job_id": job_id, "reason": str(error)},
            )
            raise
        logger.info("replay job %s: %s", job_id, outcome.value)

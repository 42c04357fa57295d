"""Chalice wiring only: each handler hands over to chalicelib.

Each deployed function (ingest, refresh_token, the API, the replay worker) runs this same
module, so handlers import their chalicelib entry points when first called: a function's cold
start pays only for the code it runs (the ingest function never loads the CXone HTTP client,
the API never loads the pipeline).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalice.app import Chalice, CloudWatchEvent, Rate, SQSEvent

from chalicelib.api.blueprint import api
from chalicelib.config import load_settings, names_from_environment
from chalicelib.console.blueprint import console_api
from chalicelib.push.blueprint import push_api
from chalicelib.telemetry import in_lambda_context, lambda_context_middleware
from chalicelib.timing import EVENT_SOURCES
from chalicelib.tracing import traced

if TYPE_CHECKING:  # the handlers' modules load on first call
    from chalicelib.model import SqsBatchResponse

# Fail at cold start, naming the variable, rather than on the first event.
load_settings()

app = Chalice(app_name="cxone-relay")
NAMES = names_from_environment()
# REST API: timelines, replay listing and jobs (IAM auth when deployed), and the replay worker.
app.register_blueprint(api)
# POST /events for push sources: HMAC-signed, checked by the function itself.
app.register_blueprint(push_api)
# GET /console: the operator console page over the routes above (IAM when deployed).
app.register_blueprint(console_api)
# Every route's log lines carry the invocation's Lambda context (request id, function name).
app.register_middleware(lambda_context_middleware, "http")


@app.on_sqs_message(
    queue=NAMES.ingest_queue,
    batch_size=EVENT_SOURCES["ingest"].batch_size,
    maximum_batching_window_in_seconds=EVENT_SOURCES["ingest"].maximum_batching_window_in_seconds,
    name="ingest",
)
@in_lambda_context
@traced
def ingest(event: SQSEvent) -> SqsBatchResponse:
    from chalicelib.ingest.handler import handle_ingest
    from chalicelib.runtime import get_runtime

    return handle_ingest(event.to_dict(), event.context, get_runtime())


@app.schedule(Rate(5, unit=Rate.MINUTES), name="refresh_token")
@in_lambda_context
@traced
def refresh_token(event: CloudWatchEvent) -> dict[str, Any]:
    from chalicelib.cxone.tokens import scheduled_refresh
    from chalicelib.runtime import get_runtime

    return scheduled_refresh(get_runtime()).log_fields()

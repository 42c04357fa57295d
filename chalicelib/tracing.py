"""The one Powertools Tracer (AWS X-Ray) of every function.

Deployed stages run with `Tracing: Active` (`.chalice/config.json` "xray", from the stack
model); the local stage sets POWERTOOLS_TRACE_DISABLED, and outside Lambda the tracer turns
itself off, so tests and the local stack send nothing. Handlers are wrapped with `traced`:
a subsegment per invocation, with exceptions recorded but never the response (responses
hold delivered events, which stay out of X-Ray).

The Tracer is made on the first invocation, not at import: creating it imports the X-Ray
SDK, which builds a botocore client and costs about as much as importing boto3. Importing
`app` (every function's cold start, and the API's routing) then pays nothing for it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from chalicelib.telemetry import SERVICE

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

Handler = TypeVar("Handler", bound=Callable[..., Any])


@functools.cache
def tracer() -> Tracer:
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE)


def traced(handler: Handler) -> Handler:
    """`handler` inside an X-Ray subsegment named after it (the Tracer made on first call)."""
    decorated: Callable[..., Any] | None = None

    @functools.wraps(handler)
    def run(*args: Any, **kwargs: Any) -> Any:
        nonlocal decorated
        if decorated is None:
            decorated = tracer().capture_method(capture_response=False)(handler)
        return decorated(*args, **kwargs)

    return cast(Handler, run)

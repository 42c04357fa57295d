"""The one Powertools Tracer (AWS X-Ray) of every function.

Deployed stages run with `Tracing: Active` (`.chalice/config.json` "xray", from the stack
model); the local stage sets POWERTOOLS_TRACE_DISABLED, and outside Lambda the tracer turns
itself off, so tests and the local stack send nothing. Handlers are wrapped with `traced`:
a subsegment per invocation, with exceptions recorded but never the response (responses
hold delivered events, which stay out of X-Ray).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Tracer

from chalicelib.telemetry import SERVICE

Handler = TypeVar("Handler", bound=Callable[..., Any])

tracer = Tracer(service=SERVICE)


def traced(handler: Handler) -> Handler:
    """`handler` inside an X-Ray subsegment named after it."""
    decorate: Callable[[Handler], Handler] = tracer.capture_method(capture_response=False)
    return decorate(handler)

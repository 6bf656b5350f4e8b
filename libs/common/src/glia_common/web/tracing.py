"""A request's trace context, at the cost its use deserves.

When spans are exported, the OpenTelemetry FastAPI instrumentation records a server
span per request. When nothing exports them, no span is ever recorded, and all a
request needs is a trace context - the caller's from ``traceparent``, else a new one -
so that its log lines, the chat ``start`` event and the extraction request carry one W3C
trace id. ``TraceContextMiddleware`` gives exactly that: a non-recording span in the
request's context, for a few microseconds instead of the instrumentation's full path
(measured in bench/README.md).
"""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from starlette.types import ASGIApp, Receive, Scope, Send

from glia_common.telemetry import continued_trace, spans_exported

# What the instrumentation would leave out; health probes and scrapes make no spans.
EXCLUDED_URLS = "healthz,readyz,metrics"
_PROPAGATED = frozenset({b"traceparent", b"tracestate", b"baggage"})


class TraceContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name in _PROPAGATED
        }
        with continued_trace(carrier, "http", trace.SpanKind.SERVER):
            await self.app(scope, receive, send)


def install_tracing(app: FastAPI) -> None:
    if spans_exported():
        # No span per ASGI send/receive: a streamed turn would otherwise make one per event.
        FastAPIInstrumentor.instrument_app(
            app, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"]
        )
    else:
        app.add_middleware(TraceContextMiddleware)

"""Without an exporter, a request still runs in a W3C trace context: the caller's
(traceparent) when it sent one, else a new one."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from glia_common.telemetry import configure_tracing
from glia_common.web.tracing import TraceContextMiddleware, install_tracing

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def app_with_trace_context() -> FastAPI:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        configure_tracing("glia-test")  # what every service does, with no exporter set
    app = FastAPI()
    install_tracing(app)

    @app.get("/ids")
    async def ids() -> dict[str, object]:
        ctx = trace.get_current_span().get_span_context()
        return {"trace_id": format(ctx.trace_id, "032x"), "valid": ctx.is_valid}

    return app


async def get_ids(app: FastAPI, headers: dict[str, str] | None = None) -> dict[str, object]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/ids", headers=headers)
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


async def test_the_light_middleware_is_used_when_nothing_exports() -> None:
    app = app_with_trace_context()
    assert any(m.cls is TraceContextMiddleware for m in app.user_middleware)


async def test_a_request_continues_the_callers_trace() -> None:
    headers = {"traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"}
    assert await get_ids(app_with_trace_context(), headers) == {
        "trace_id": CALLER_TRACE,
        "valid": True,
    }


async def test_a_request_without_a_caller_trace_gets_a_new_one() -> None:
    app = app_with_trace_context()
    first, second = await get_ids(app), await get_ids(app)
    assert first["valid"] and second["valid"]
    assert first["trace_id"] != second["trace_id"] != "0" * 32


async def test_a_malformed_traceparent_starts_a_new_trace() -> None:
    ids = await get_ids(app_with_trace_context(), {"traceparent": "00-zz-bad-01"})
    assert ids["valid"] and ids["trace_id"] != CALLER_TRACE

"""The frame every Glia HTTP process shares: problem details, health and readiness,
metrics, request ids and tracing around the service's own routes; and how it is served."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy import text

from glia_common.settings import ServiceSettings
from glia_common.stalls import StallMonitor
from glia_common.web.body_limit import BodyLimitMiddleware
from glia_common.web.health import health_router
from glia_common.web.metrics import install_metrics
from glia_common.web.problems import (
    ProblemError,
    install_problem_handlers,
    problem_response,
    validation_response,
)
from glia_common.web.request_id import RequestIdMiddleware
from glia_common.web.security import authenticate
from glia_common.web.tracing import install_tracing

VERSION = "0.1.0"


async def database_ready(app: FastAPI) -> bool:
    database = app.state.database
    if isinstance(database, asyncpg.Pool):
        await database.fetchval("SELECT 1")
        return True
    async with database.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return True


async def broker_ready(app: FastAPI, *, connect: bool) -> bool:
    broker = app.state.broker
    if connect and not await broker.ping(timeout=1.0):
        await broker.connect()  # a process that only checks reachability connects lazily
    return bool(await broker.ping(timeout=1.0))


def build_service_app(
    *,
    title: str,
    description: str,
    lifespan: Any,
    settings: ServiceSettings,
    routers: Sequence[APIRouter] = (),
    connect_broker_for_readiness: bool = False,
) -> FastAPI:
    """A FastAPI app whose lifespan must set ``app.state.database`` (an engine, or a
    driver pool) and ``app.state.broker``."""
    # Tracing comes from the OpenTelemetry FastAPI instrumentation below (it is what
    # carries the excluded routes and span options); FastAPI's own telemetry stays off
    # instead of checking for it on every request.
    app = FastAPI(
        title=title,
        version=VERSION,
        description=description,
        lifespan=_with_stall_monitor(lifespan, settings.stall_log_ms),
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_problem_handlers(app)
    _authenticate_before_validation(app)

    async def database() -> bool:
        return await database_ready(app)

    async def broker() -> bool:
        return await broker_ready(app, connect=connect_broker_for_readiness)

    app.include_router(health_router(lambda: {"database": database, "broker": broker}))
    for router in routers:
        app.include_router(router)
    install_tracing(app)
    install_metrics(app)
    # Outermost: request ids on every answer, then the size limit before anything reads.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.http_max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app


def _with_stall_monitor(lifespan: Any, threshold_ms: float) -> Any:
    if not threshold_ms:
        return lifespan

    @asynccontextmanager
    async def monitored(app: FastAPI) -> AsyncIterator[None]:
        monitor = StallMonitor(threshold_ms)
        monitor.start()
        try:
            async with lifespan(app):
                yield
        finally:
            await monitor.stop()

    return monitored


def _authenticate_before_validation(app: FastAPI) -> None:
    """FastAPI rejects a body that is not JSON before any dependency runs, so an
    unauthenticated request would learn about its body before its missing token. On
    the authenticated routes, a validation failure answers 401 first when the caller
    is not authenticated."""

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if request.url.path.startswith("/v1/"):
            try:
                await authenticate(request)
            except ProblemError as problem:
                return problem_response(
                    problem.status, problem.detail, problem.code, problem.headers
                )
        return validation_response(exc)

    app.add_exception_handler(RequestValidationError, on_validation)


def serve(
    app: FastAPI, settings: ServiceSettings, default_port: int, graceful_timeout_s: float
) -> None:
    # What exists now (modules, routes, models, schemas) lives as long as the process:
    # freeze it out of the collector's full passes, which would otherwise scan it all
    # every time (about 40 ms for a service here, a pause every request waits through).
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port or default_port,
        log_config=None,
        timeout_graceful_shutdown=int(graceful_timeout_s),
    )

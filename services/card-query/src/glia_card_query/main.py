"""glia-card-query: the read side for cards and their freshness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from sqlalchemy import text

from glia_card_query.api import cards
from glia_card_query.events import CardEventHub
from glia_common.auth import TokenVerifier
from glia_common.db import create_engine, create_sessionmaker
from glia_common.messaging import build_broker
from glia_common.settings import Settings, get_settings
from glia_common.telemetry import configure_telemetry, get_logger, shutdown_telemetry
from glia_common.web.health import health_router
from glia_common.web.metrics import install_metrics
from glia_common.web.problems import install_problem_handlers
from glia_common.web.request_id import RequestIdMiddleware

SERVICE_NAME = "glia-card-query"
DEFAULT_PORT = 8001

log = get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_telemetry(SERVICE_NAME, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        broker = build_broker(settings, logger=None)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.token_verifier = TokenVerifier(settings)
        app.state.broker = broker
        app.state.card_events = CardEventHub(settings.database_url)
        app.state.card_events.start()
        log.info("card_query.started")
        try:
            yield
        finally:
            await app.state.card_events.stop()
            await broker.stop()
            await engine.dispose()
            shutdown_telemetry()

    app = FastAPI(
        title="Glia card query API",
        version="0.1.0",
        description="Cards derived from conversations (summary, facts, tasks, decisions, "
        "questions) and their freshness.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)

    async def database_ready() -> bool:
        async with app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def broker_ready() -> bool:
        # Connect lazily: card-query only needs to know the broker is reachable.
        broker = app.state.broker
        if not await broker.ping(timeout=1.0):
            await broker.connect()
        return bool(await broker.ping(timeout=1.0))

    app.include_router(health_router(lambda: {"database": database_ready, "broker": broker_ready}))
    app.include_router(cards.router)
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    install_metrics(app)
    app.add_middleware(RequestIdMiddleware)
    return app


def run() -> None:
    settings = get_settings()
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port or DEFAULT_PORT,
        log_config=None,
    )


if __name__ == "__main__":
    run()

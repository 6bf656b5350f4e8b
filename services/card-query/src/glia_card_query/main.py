"""glia-card-query: the read side for cards and their freshness."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from glia_card_query.cards import routes as cards
from glia_card_query.cards.events import CardEventHub
from glia_card_query.settings import CardQuerySettings
from glia_common.auth import TokenVerifier
from glia_common.db import create_driver_pool, refuse_privileged_roles
from glia_common.messaging import build_broker
from glia_common.settings import driver_database_url
from glia_common.telemetry import configure_telemetry, get_logger, shutdown_telemetry
from glia_common.web.cors import install_cors
from glia_common.web.service import build_service_app, serve

SERVICE_NAME = "glia-card-query"
DEFAULT_PORT = 8001

log = get_logger(__name__)


def create_app(settings: CardQuerySettings | None = None) -> FastAPI:
    settings = settings or CardQuerySettings()
    configure_telemetry(SERVICE_NAME, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # First: auth settings that cannot work stop the process before anything opens.
        app.state.token_verifier = TokenVerifier(settings)
        await refuse_privileged_roles(SERVICE_NAME, {"GLIA_DATABASE_URL": settings.database_url})
        # Every query here runs on the driver, so a plain driver pool: no ORM checkout
        # per request, and no pre-ping (a dead connection is found as its read begins).
        database = await create_driver_pool(settings)
        broker = build_broker(settings, logger=None)
        app.state.settings = settings
        app.state.database = database
        app.state.broker = broker
        app.state.card_events = CardEventHub(
            driver_database_url(settings.database_url),
            lambda user_id, cid: cards.read_freshness(database, user_id, cid),
            max_per_user=settings.card_subscriptions_per_user,
        )
        app.state.card_events.start()
        log.info("card_query.started")
        try:
            yield
        finally:
            await app.state.card_events.stop()
            await broker.stop()
            await database.close()
            shutdown_telemetry()

    app = build_service_app(
        title="Glia card query API",
        description="Cards derived from conversations (summary, facts, tasks, decisions, "
        "questions) and their freshness.",
        lifespan=lifespan,
        settings=settings,
        routers=[cards.router],
        connect_broker_for_readiness=True,
    )
    install_cors(app, settings)
    return app


def run() -> None:
    settings = CardQuerySettings()
    serve(create_app(settings), settings, DEFAULT_PORT, graceful_timeout_s=10)


if __name__ == "__main__":
    run()

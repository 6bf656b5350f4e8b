"""glia-chat-api: the app factory, its lifespan, and the process entry point."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from glia_chat_api.conversations import routes as conversations
from glia_chat_api.llm import ChatModel, LocalResponder, OpenAIChat
from glia_chat_api.llm.budget import HistoryBudget
from glia_chat_api.outbox.relay import OutboxRelay
from glia_chat_api.settings import ChatApiSettings
from glia_chat_api.turns import routes as turns
from glia_chat_api.turns.runner import TurnRunner
from glia_chat_api.turns.signals import TurnSignals
from glia_chat_api.turns.sweeper import StaleTurnSweeper
from glia_chat_api.webapp import mount_web_app
from glia_common.auth import TokenVerifier
from glia_common.db import (
    create_driver_pool,
    create_engine,
    create_sessionmaker,
    create_worker_engine,
    refuse_privileged_roles,
)
from glia_common.llm import build_openai_client, provider_name
from glia_common.messaging import build_broker
from glia_common.settings import driver_database_url
from glia_common.telemetry import configure_telemetry, get_logger, shutdown_telemetry
from glia_common.web.cors import install_cors
from glia_common.web.service import build_service_app, serve

SERVICE_NAME = "glia-chat-api"
DEFAULT_PORT = 8000
# Open streams get this long to finish on shutdown before they are cut (and settled).
DRAIN_TIMEOUT_S = 25.0

log = get_logger(__name__)


def build_chat_model(settings: ChatApiSettings) -> ChatModel:
    if not settings.llm_configured:
        return LocalResponder()
    return OpenAIChat(
        build_openai_client(settings),
        settings.chat_model,
        provider_name(settings.llm_base_url),
        max_tokens=settings.chat_max_tokens,
    )


def create_app(settings: ChatApiSettings | None = None) -> FastAPI:
    settings = settings or ChatApiSettings()
    configure_telemetry(SERVICE_NAME, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # First: auth settings that cannot work stop the process before anything opens.
        app.state.token_verifier = TokenVerifier(settings)
        await refuse_privileged_roles(
            SERVICE_NAME,
            {
                "GLIA_DATABASE_URL": settings.database_url,
                "GLIA_DATABASE_WORKER_URL": settings.worker_database_url,
            },
        )
        # A turn's statements run on the driver (turns/store.py): they take connections
        # from a plain asyncpg pool, without an engine checkout and its ping per statement.
        # The ORM engine serves the lighter routes (conversations) and the background work.
        turn_database = await create_driver_pool(settings)
        engine = create_engine(settings, pool_size=max(2, settings.database_pool_size // 4))
        sessionmaker = create_sessionmaker(engine)
        # The relay and the sweeper work across users, as the worker role.
        worker_engine = create_worker_engine(settings, engine)
        worker_sessionmaker = create_sessionmaker(worker_engine)
        broker = build_broker(settings, logger=None)
        relay = OutboxRelay(
            worker_sessionmaker,
            broker,
            batch_size=settings.outbox_batch_size,
            poll_interval_s=settings.outbox_poll_interval_s,
        )
        sweeper = StaleTurnSweeper(
            worker_sessionmaker,
            stale_after_s=settings.turn_stale_after_s,
            interval_s=settings.turn_sweep_interval_s,
            on_settled=relay.wake,
        )
        model = build_chat_model(settings)
        app.state.settings = settings
        app.state.database = engine
        app.state.turn_database = turn_database
        app.state.sessionmaker = sessionmaker
        app.state.broker = broker
        app.state.relay = relay
        runner = TurnRunner(
            turn_database, model, HistoryBudget(settings.chat_history_tokens), on_settled=relay.wake
        )
        signals = TurnSignals(
            driver_database_url(settings.database_url),
            on_follow=runner.follow_requested,
            on_cancel=runner.cancel,
        )
        app.state.turn_runner = runner
        app.state.turn_signals = signals
        signals.start()
        relay.start()
        background = [
            asyncio.create_task(sweeper.run_forever(), name="stale-turn-sweeper"),
            asyncio.create_task(runner.heartbeat_forever(), name="turn-heartbeats"),
        ]
        log.info("chat_api.started", llm=model.provider, model=model.model)
        try:
            yield
        finally:
            await runner.drain(DRAIN_TIMEOUT_S)
            await signals.stop()
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await relay.stop()
            if worker_engine is not engine:
                await worker_engine.dispose()
            await turn_database.close()
            await engine.dispose()
            shutdown_telemetry()

    app = build_service_app(
        title="Glia chat API",
        description="Authenticated conversations with an assistant, streamed over "
        "Server-Sent Events.",
        lifespan=lifespan,
        settings=settings,
        routers=[conversations.router, turns.router],
    )
    mount_web_app(app, settings)
    install_cors(app, settings)
    return app


def run() -> None:
    settings = ChatApiSettings()
    serve(create_app(settings), settings, DEFAULT_PORT, graceful_timeout_s=DRAIN_TIMEOUT_S + 5)


if __name__ == "__main__":
    run()

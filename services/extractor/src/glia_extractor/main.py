"""glia-extractor: the extraction worker, with /healthz, /readyz and /metrics on its port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from glia_common.db import (
    create_driver_pool,
    create_engine,
    create_sessionmaker,
    create_worker_engine,
    refuse_privileged_roles,
)
from glia_common.llm import build_openai_client, provider_name
from glia_common.messaging import build_broker, declare_topology
from glia_common.telemetry import configure_telemetry, get_logger, shutdown_telemetry
from glia_common.web.service import build_service_app, serve
from glia_extractor.extraction.llm import LlmExtractor
from glia_extractor.extraction.service import ExtractionService
from glia_extractor.handlers.extraction import register
from glia_extractor.reconciler import Reconciler
from glia_extractor.settings import ExtractorSettings

SERVICE_NAME = "glia-extractor"
DEFAULT_PORT = 8002

log = get_logger(__name__)


def build_llm(settings: ExtractorSettings) -> LlmExtractor | None:
    if not settings.llm_configured:
        return None
    return LlmExtractor(
        build_openai_client(settings),
        settings.extraction_model,
        provider_name(settings.llm_base_url),
    )


def create_app(settings: ExtractorSettings | None = None) -> FastAPI:
    settings = settings or ExtractorSettings()
    configure_telemetry(SERVICE_NAME, settings)
    # A run may wait on the LLM (with its retries) before it can finish: in-flight runs
    # get that long on shutdown, and waiting for a conversation's lock gets twice that.
    run_budget_s = settings.llm_timeout_s * (settings.llm_max_retries + 1) + 10

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await refuse_privileged_roles(
            SERVICE_NAME,
            {
                "GLIA_DATABASE_URL": settings.database_url,
                "GLIA_DATABASE_WORKER_URL": settings.worker_database_url,
            },
        )
        # Runs on the driver (extraction/service.py), one connection per message in flight.
        database = await create_driver_pool(settings, size=settings.extractor_prefetch + 2)
        # The ORM side is small: readiness, and the reconciler when it shares the role.
        engine = create_engine(settings, pool_size=2, max_overflow=2, pre_ping=False)
        # The reconciler works across users, as the worker role.
        worker_engine = create_worker_engine(settings, engine)
        broker = build_broker(
            settings, graceful_timeout=run_budget_s, logger=None, apply_types=False
        )
        service = ExtractionService(
            database,
            build_llm(settings),
            lock_timeout_s=2 * run_budget_s,
            window_messages=settings.extraction_window_messages,
        )
        register(broker, service, prefetch=settings.extractor_prefetch)
        reconciler = Reconciler(
            create_sessionmaker(worker_engine),
            broker,
            interval_s=settings.reconcile_interval_s,
            grace_s=settings.reconcile_grace_s,
        )
        app.state.database = engine
        app.state.broker = broker
        app.state.service = service

        async def start_consuming() -> None:
            delay = 0.5
            while True:
                try:
                    await broker.connect()
                    await declare_topology(broker, operator=True)
                    await broker.start()
                    log.info("extractor.consuming", provider=service.provider, model=service.model)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("extractor.broker_unavailable", error=type(exc).__name__)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)

        tasks = [
            asyncio.create_task(start_consuming(), name="extractor-start"),
            asyncio.create_task(reconciler.run_forever(), name="extractor-reconciler"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):
                await broker.stop()
            if worker_engine is not engine:
                await worker_engine.dispose()
            await engine.dispose()
            await database.close()
            shutdown_telemetry()

    return build_service_app(
        title="Glia extractor",
        description="Extraction worker: health, readiness and metrics.",
        lifespan=lifespan,
        settings=settings,
    )


def run() -> None:
    settings = ExtractorSettings()
    serve(
        create_app(settings), settings, DEFAULT_PORT, graceful_timeout_s=settings.llm_timeout_s + 15
    )


if __name__ == "__main__":
    run()

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from glia_common.db import create_driver_pool
from glia_common.llm import build_openai_client
from glia_common.messaging import ExtractionRequested
from glia_e2e.seeding import seed_conversation
from glia_extractor.extraction.llm import LlmExtractor
from glia_extractor.extraction.service import ExtractionJob, ExtractionService
from glia_fakes.llm import FakeLLM


@pytest.fixture
async def db(settings: Any) -> AsyncIterator[Any]:
    pool = await create_driver_pool(settings, size=4)
    yield pool
    await pool.close()


MakeService = Callable[..., ExtractionService]


@pytest.fixture
def make_service(db: Any, settings_factory: Any, llm: FakeLLM) -> MakeService:
    def make(
        *, with_llm: bool = True, engine: Any = None, timeout_s: float = 2.0, window: int = 40
    ) -> ExtractionService:
        extractor = None
        if with_llm:
            s = settings_factory(
                llm_base_url=llm.base_url,
                llm_api_key="k",
                llm_timeout_s=timeout_s,
                llm_max_retries=0,
            )
            extractor = LlmExtractor(build_openai_client(s), "test-model", "fake")
        return ExtractionService(engine or db, extractor, lock_timeout_s=30, window_messages=window)

    return make


Seed = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture
def seed(settings: Any) -> Seed:
    """``await seed(user, ["user text", "assistant text", ...])`` -> conversation id."""

    async def make(
        user: str, texts: list[str], conversation_id: uuid.UUID | None = None
    ) -> uuid.UUID:
        cid, _ = await seed_conversation(
            settings.database_url, user, texts, conversation_id=conversation_id
        )
        return cid

    return make


def job(conversation_id: uuid.UUID, user: str, **kw: Any) -> ExtractionJob:
    request = ExtractionRequested(
        conversation_id=conversation_id,
        user_id=user,
        request_id="req-test",
        requested_at=datetime.now(UTC),
    )
    return ExtractionJob(request=request, trace_id="ab" * 16, **kw)


@pytest.fixture
def make_job() -> Callable[..., ExtractionJob]:
    return job

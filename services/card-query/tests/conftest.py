from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from glia_card_query.main import create_app
from glia_e2e.seeding import seed_conversation
from glia_extractor.extraction.store import ExtractionStore
from glia_extractor.extraction.types import CardDraft


@pytest.fixture
async def cards_api(serve: Any, settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    served = await serve(create_app(settings))
    hub = served.server.config.app.state.card_events
    await hub.listening.wait()
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as client:
        yield client


MakeConversation = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture
def conversation(settings: Any) -> MakeConversation:
    async def make(user: str, messages: int = 2) -> uuid.UUID:
        texts = [f"message {i}" for i in range(messages)]
        cid, _ = await seed_conversation(settings.database_url, user, texts, title="cards")
        return cid

    return make


Derive = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture
def derive(settings: Any) -> Derive:
    """Replace a conversation's cards exactly as the extractor does; returns the set's id."""

    async def replace(user: str, cid: uuid.UUID, kinds: list[str]) -> uuid.UUID:
        run_id = uuid.uuid4()
        conn = await asyncpg.connect(settings.database_url)
        try:
            store = ExtractionStore(conn)
            async with store.transaction_as(user):
                complete = await conn.fetchval(
                    "SELECT complete_message_count FROM conversations WHERE id = $1", cid
                )
                assert complete is not None
                await store.replace(
                    conversation_id=cid,
                    user_id=user,
                    source_hash=f"hash-{run_id.hex[:8]}",
                    run_id=run_id,
                    origin="fallback",
                    cards=[
                        CardDraft(k, f"{k} {i}", f"body {i}", ())  # type: ignore[arg-type]
                        for i, k in enumerate(kinds)
                    ],
                    source_message_count=complete,
                    run={
                        "latency_ms": 0,
                        "fallback_used": True,
                        "failure_class": "not_configured",
                        "error": None,
                    },
                )
        finally:
            await conn.close()
        return run_id

    return replace

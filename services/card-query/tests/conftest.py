from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from glia_card_query.main import create_app
from glia_common.db import create_engine, create_sessionmaker, user_transaction
from glia_common.repositories import (
    CardRepository,
    ConversationRepository,
    MessageRepository,
    NewCard,
)


@pytest.fixture
async def cards_api(serve: Any, settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    served = await serve(create_app(settings))
    hub = served.server.config.app.state.card_events
    await hub.listening.wait()
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as client:
        yield client


@pytest.fixture
async def sessionmaker(settings: Any) -> AsyncIterator[Any]:
    engine = create_engine(settings)
    yield create_sessionmaker(engine)
    await engine.dispose()


MakeConversation = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture
def conversation(sessionmaker: Any) -> MakeConversation:
    async def make(user: str, messages: int = 2) -> uuid.UUID:
        async with user_transaction(sessionmaker, user) as session:
            conv = await ConversationRepository.from_session(session).create(user, "cards")
            for i in range(messages):
                await MessageRepository.from_session(session).add(
                    conversation_id=conv.id,
                    user_id=user,
                    role="user" if i % 2 == 0 else "assistant",
                    content=f"message {i}",
                    status="complete",
                )
            return conv.id

    return make


Derive = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture
def derive(sessionmaker: Any) -> Derive:
    """Replace a conversation's cards as the extractor would; returns the run id."""

    async def replace(
        user: str, cid: uuid.UUID, kinds: list[str], *, source_count: int | None = None
    ) -> uuid.UUID:
        run_id = uuid.uuid4()
        async with user_transaction(sessionmaker, user) as session:
            conv = await ConversationRepository.from_session(session).get(cid)
            assert conv is not None
            await CardRepository.from_session(session).replace(
                conversation_id=cid,
                user_id=user,
                run_id=run_id,
                source_hash=f"hash-{run_id.hex[:8]}",
                source_message_count=conv.complete_message_count
                if source_count is None
                else source_count,
                cards=[
                    NewCard(k, f"{k} {i}", f"body {i}", "fallback", []) for i, k in enumerate(kinds)
                ],
            )
        return run_id

    return replace

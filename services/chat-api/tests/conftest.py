from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from glia_chat_api.main import create_app

StartChat = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def start_chat(serve: Any, settings_factory: Any) -> AsyncIterator[StartChat]:
    """``await start_chat(**settings_overrides)`` -> an httpx client on a served chat API."""
    clients: list[httpx.AsyncClient] = []

    async def start(**overrides: Any) -> httpx.AsyncClient:
        served = await serve(create_app(settings_factory(**overrides)))
        client = httpx.AsyncClient(base_url=served.base_url, timeout=30)
        client.app_state = served.server.config.app.state  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.aclose()


@pytest.fixture
async def chat(start_chat: StartChat) -> httpx.AsyncClient:
    """The chat API with the built-in local responder."""
    return await start_chat()


@pytest.fixture
async def chat_llm(start_chat: StartChat, llm: Any) -> httpx.AsyncClient:
    """The chat API talking to the fake OpenAI-compatible server."""
    return await start_chat(llm_base_url=llm.base_url, llm_api_key="test-key", llm_timeout_s=2.0)

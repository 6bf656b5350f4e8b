"""Live card events: one shared freshness read per notification, per-user stream limits,
and streams that end with the token that opened them."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import httpx
import pytest

from glia_card_query.cards.events import GONE, CardEventHub, TooManySubscriptions
from glia_card_query.main import create_app
from glia_common.messaging import CARDS_CHANNEL, card_change_payload
from glia_common.settings import driver_database_url
from glia_e2e.sse import iter_events

pytestmark = pytest.mark.integration


def h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_one_notification_is_one_read_for_every_subscriber(
    settings: Any, admin_db: asyncpg.Connection
) -> None:
    reads: list[tuple[str, uuid.UUID]] = []
    cid = uuid.uuid4()

    async def read(user_id: str, conversation_id: uuid.UUID) -> object | None:
        reads.append((user_id, conversation_id))
        await asyncio.sleep(0.05)
        return {"state": "current"}

    hub = CardEventHub(driver_database_url(settings.database_url), read, max_per_user=10)
    hub.start()
    try:
        await asyncio.wait_for(hub.listening.wait(), 10)
        with (
            hub.subscribe("alice", cid) as q1,
            hub.subscribe("alice", cid) as q2,
            hub.subscribe("alice", cid) as q3,
        ):
            await admin_db.execute(
                "SELECT pg_notify($1, $2)", CARDS_CHANNEL, card_change_payload(cid)
            )
            values = [await asyncio.wait_for(q.get(), 5) for q in (q1, q2, q3)]
        assert values == [{"state": "current"}] * 3
        assert reads == [("alice", cid)], "one read, as the conversation's owner"
        assert hub.subscriptions("alice") == 0
    finally:
        await hub.stop()


async def test_a_deleted_conversation_ends_its_subscriptions(settings: Any) -> None:
    async def read(user_id: str, conversation_id: uuid.UUID) -> object | None:
        return None

    hub = CardEventHub(driver_database_url(settings.database_url), read, max_per_user=1)
    cid = uuid.uuid4()
    with hub.subscribe("bob", cid) as queue:
        with pytest.raises(TooManySubscriptions), hub.subscribe("bob", uuid.uuid4()):
            pass
        hub._refresh(cid)
        assert await asyncio.wait_for(queue.get(), 5) is GONE


async def test_too_many_streams_of_one_user_is_429(
    serve: Any, settings_factory: Any, mint: Any, user: str, conversation: Any
) -> None:
    served = await serve(create_app(settings_factory(card_subscriptions_per_user=2)))
    await served.server.config.app.state.card_events.listening.wait()
    cid = await conversation(user)
    url = f"/v1/cards/events?conversation_id={cid}"
    async with httpx.AsyncClient(base_url=served.base_url, timeout=10) as client:
        async with AsyncExitStack() as stack:
            for _ in range(2):
                r = await stack.enter_async_context(
                    client.stream("GET", url, headers=h(mint(user)))
                )
                assert r.status_code == 200
            extra = await client.get(url, headers=h(mint(user)))
            assert extra.status_code == 429 and int(extra.headers["retry-after"]) >= 1
            assert extra.json()["code"] == "rate_limited"
            other = user + "-other"
            other_cid = await conversation(other)
            async with client.stream(
                "GET", f"/v1/cards/events?conversation_id={other_cid}", headers=h(mint(other))
            ) as theirs:
                assert theirs.status_code == 200
        # Closed streams free their places.
        async with client.stream("GET", url, headers=h(mint(user))) as again:
            assert again.status_code == 200


async def test_a_stream_ends_when_its_token_expires(
    cards_api: httpx.AsyncClient, mint: Any, user: str, conversation: Any
) -> None:
    cid = await conversation(user)
    short = mint(user, 2)
    async with cards_api.stream(
        "GET", f"/v1/cards/events?conversation_id={cid}", headers=h(short)
    ) as response:
        assert response.status_code == 200
        events = [e async for e in iter_events(response)]
    assert [e.event for e in events] == ["reconnect"]
    assert events[0].data == {"reason": "token_expired"}

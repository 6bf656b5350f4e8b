"""The transactional outbox: published after the turn's commit, and held while
RabbitMQ is unreachable, then sent when it returns, with no restart."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import httpx
import pytest

from glia_chat_api.main import create_app
from glia_common.messaging import EXTRACTION_QUEUE_NAME
from glia_e2e.api import new_conversation
from glia_e2e.sse import post_message
from glia_fakes.tcp_proxy import FaultProxy

pytestmark = pytest.mark.integration


async def find_message(
    amqp_url: str, conversation_id: str, timeout_s: float = 30.0
) -> aio_pika.IncomingMessage:
    """Take messages off glia.extraction until this conversation's request shows up."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(EXTRACTION_QUEUE_NAME)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            await message.ack()
            if json.loads(message.body)["conversation_id"] == conversation_id:
                return message
        raise AssertionError(f"no extraction request for {conversation_id}")
    finally:
        await connection.close()


async def test_turn_end_publishes_an_extraction_request(
    chat: httpx.AsyncClient, mint: Any, user: str, infra: Any, admin_db: asyncpg.Connection
) -> None:
    token = mint(user)
    cid = await new_conversation(chat, token)
    stream = await post_message(chat, cid, "please extract me", token)
    start = stream.first("start").data
    message = await find_message(infra.amqp_url, cid)
    body = json.loads(message.body)
    assert set(body) >= {"conversation_id", "user_id", "request_id", "requested_at"}
    assert body["user_id"] == user and body["request_id"] == start["request_id"]
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    traceparent = str((message.headers or {})["traceparent"])
    assert traceparent.split("-")[1] == start["trace_id"]
    for _ in range(50):
        if await admin_db.fetchval(
            "SELECT sent_at IS NOT NULL FROM outbox WHERE conversation_id = $1", uuid.UUID(cid)
        ):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the outbox row was not marked sent")


async def test_broker_outage_holds_requests_until_it_returns(
    serve: Any,
    settings_factory: Any,
    mint: Any,
    user: str,
    infra: Any,
    admin_db: asyncpg.Connection,
) -> None:
    parts = urlsplit(infra.amqp_url)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    await proxy.start()
    try:
        served = await serve(create_app(settings_factory(amqp_url=proxy.url_for(infra.amqp_url))))
        async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as chat:
            token = mint(user)
            await asyncio.sleep(0.5)  # let the relay connect through the proxy
            await proxy.cut()
            cids = []
            for i in range(3):
                cid = await new_conversation(chat, token)
                stream = await post_message(chat, cid, f"while the broker is down {i}", token)
                assert stream.names()[-1] == "done", "chat keeps working without RabbitMQ"
                cids.append(cid)
            await asyncio.sleep(1.0)
            unsent = await admin_db.fetchval(
                "SELECT count(*) FROM outbox WHERE conversation_id = ANY($1::uuid[]) AND sent_at IS NULL",
                [uuid.UUID(c) for c in cids],
            )
            assert unsent == 3
            proxy.restore()
            for cid in cids:
                await find_message(infra.amqp_url, cid, timeout_s=45)
    finally:
        await proxy.stop()


async def test_concurrent_relays_publish_each_row_once(
    settings: Any, user: str, admin_db: asyncpg.Connection, infra: Any
) -> None:
    """Two relays racing over the same backlog: every row is published exactly once."""
    from sqlalchemy import insert

    from glia_chat_api.outbox.relay import OutboxRelay
    from glia_common.db import create_engine, create_sessionmaker, user_transaction
    from glia_common.messaging import (
        EXTRACTION_ROUTING_KEY,
        ExtractionRequested,
        build_broker,
        declare_topology,
    )
    from glia_common.models import OutboxMessage
    from glia_e2e.seeding import seed_conversation

    engine = create_engine(settings)
    sm = create_sessionmaker(engine)
    cid, _ = await seed_conversation(settings.database_url, user, title="relay race")
    async with user_transaction(sm, user) as session:
        for i in range(40):
            payload = ExtractionRequested.now(cid, user, f"race-{i}")
            await session.execute(
                insert(OutboxMessage).values(
                    user_id=user,
                    conversation_id=cid,
                    routing_key=EXTRACTION_ROUTING_KEY,
                    payload=payload.model_dump(mode="json"),
                    headers={},
                )
            )
    brokers = [build_broker(settings, logger=None) for _ in range(2)]
    relays = [OutboxRelay(sm, b, batch_size=7, poll_interval_s=0.05) for b in brokers]
    try:
        for b in brokers:
            await b.connect()
            await declare_topology(b)

        async def drain(relay: OutboxRelay) -> int:
            total = 0
            while (n := await relay.publish_batch()) > 0:
                total += n
            return total

        counts = await asyncio.gather(drain(relays[0]), drain(relays[1]))
        assert sum(counts) == 40
        seen: list[str] = []
        connection = await aio_pika.connect(infra.amqp_url)
        channel = await connection.channel()
        queue = await channel.get_queue(EXTRACTION_QUEUE_NAME)
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            await message.ack()
            body = json.loads(message.body)
            if body["conversation_id"] == str(cid):
                seen.append(body["request_id"])
        await connection.close()
        assert sorted(seen) == sorted(f"race-{i}" for i in range(40))
    finally:
        for b in brokers:
            await b.stop()
        await engine.dispose()


async def test_abandoned_streaming_turns_are_settled(
    settings: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    """A turn whose process died (no checkpoint for too long) becomes incomplete."""
    from glia_chat_api.turns.sweeper import StaleTurnSweeper
    from glia_common.db import create_engine, create_sessionmaker
    from glia_e2e.seeding import seed_conversation

    engine = create_engine(settings)
    sm = create_sessionmaker(engine)
    try:
        cid, (msg,) = await seed_conversation(
            settings.database_url, user, [("assistant", "half a", "streaming")]
        )
        await admin_db.execute(
            "UPDATE messages SET updated_at = now() - interval '1 hour' WHERE id = $1", msg
        )
        woken: list[bool] = []
        sweeper = StaleTurnSweeper(sm, stale_after_s=60, on_settled=lambda: woken.append(True))
        assert await sweeper.sweep() >= 1
        assert woken
        row = await admin_db.fetchrow("SELECT status, content FROM messages WHERE id = $1", msg)
        assert (row["status"], row["content"]) == ("incomplete", "half a")
        assert (
            await admin_db.fetchval("SELECT count(*) FROM outbox WHERE conversation_id = $1", cid)
            == 1
        )
    finally:
        await engine.dispose()

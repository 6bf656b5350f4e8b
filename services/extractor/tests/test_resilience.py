"""Outages under running services: RabbitMQ gone during chat turns, PostgreSQL gone
under the worker, requests lost on the way. Everything converges without a restart."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import httpx
import pytest

from glia_chat_api.main import create_app as create_chat_app
from glia_e2e.sse import post_message
from glia_extractor.main import create_app as create_extractor_app
from glia_fakes.tcp_proxy import FaultProxy

pytestmark = pytest.mark.integration


async def current(admin_db: asyncpg.Connection, cids: list[uuid.UUID], timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        done = await admin_db.fetchval(
            "SELECT count(*) FROM conversations c JOIN extraction_state s ON s.conversation_id = c.id "
            "WHERE c.id = ANY($1::uuid[]) AND s.source_message_count = c.complete_message_count",
            cids,
        )
        if done == len(cids):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"only {done} of {len(cids)} conversations are current")
        await asyncio.sleep(0.2)


async def test_rabbitmq_outage_during_turns_heals_without_restarts(
    serve: Any,
    settings_factory: Any,
    infra: Any,
    mint: Any,
    user: str,
    admin_db: asyncpg.Connection,
) -> None:
    parts = urlsplit(infra.amqp_url)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    await proxy.start()
    try:
        settings = settings_factory(
            amqp_url=proxy.url_for(infra.amqp_url), reconcile_interval_s=3600
        )
        chat_served = await serve(create_chat_app(settings))
        await serve(create_extractor_app(settings))
        await asyncio.sleep(1.0)
        token = mint(user)
        async with httpx.AsyncClient(base_url=chat_served.base_url, timeout=30) as chat:
            cids = []
            await proxy.cut()
            for i in range(3):
                cid = (
                    await chat.post(
                        "/v1/conversations", json={}, headers={"Authorization": f"Bearer {token}"}
                    )
                ).json()["id"]
                stream = await post_message(chat, cid, f"turn {i} while RabbitMQ is away", token)
                assert stream.names()[-1] == "done"
                cids.append(uuid.UUID(cid))
            await asyncio.sleep(2.0)
            proxy.restore()
            await current(admin_db, cids, timeout_s=60)
    finally:
        await proxy.stop()


async def test_database_outage_under_the_worker_recovers(
    serve: Any,
    settings_factory: Any,
    infra: Any,
    seed: Any,
    user: str,
    admin_db: asyncpg.Connection,
) -> None:
    parts = urlsplit(infra.app_url)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    try:
        settings = settings_factory(
            database_url=proxy.url_for(infra.app_url), reconcile_interval_s=3600
        )
        await serve(create_extractor_app(settings))
        await asyncio.sleep(0.5)
        cid = await seed(user, ["written before the outage", "ok"])
        await proxy.cut()
        body = json.dumps(
            {
                "conversation_id": str(cid),
                "user_id": user,
                "request_id": "db-outage",
                "requested_at": datetime.now(UTC).isoformat(),
            }
        ).encode()
        connection = await aio_pika.connect(infra.amqp_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("glia")
            await exchange.publish(
                aio_pika.Message(body, content_type="application/json"),
                routing_key="extraction.requested",
            )
        finally:
            await connection.close()
        await asyncio.sleep(2.0)
        assert (
            await admin_db.fetchval(
                "SELECT count(*) FROM extraction_state WHERE conversation_id = $1", cid
            )
            == 0
        )
        proxy.restore()
        await current(admin_db, [cid], timeout_s=60)
        statuses = [
            r["status"]
            for r in await admin_db.fetch(
                "SELECT status FROM extraction_runs WHERE conversation_id = $1", cid
            )
        ]
        assert statuses.count("succeeded") == 1
    finally:
        await proxy.stop()


async def test_reconciler_requests_lost_extractions(
    serve: Any, settings_factory: Any, seed: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    # A conversation whose extraction request never made it: no outbox row, no message.
    cid = await seed(user, ["this request was lost", "somewhere"])
    await admin_db.execute(
        "UPDATE conversations SET updated_at = now() - interval '1 minute' WHERE id = $1", cid
    )
    await serve(
        create_extractor_app(settings_factory(reconcile_interval_s=0.5, reconcile_grace_s=5))
    )
    await current(admin_db, [cid], timeout_s=30)
    requested = await admin_db.fetchval(
        "SELECT extraction_requested_at FROM conversations WHERE id = $1", cid
    )
    assert requested is not None
    [request_id] = [
        r["request_id"]
        for r in await admin_db.fetch(
            "SELECT request_id FROM extraction_runs WHERE conversation_id = $1", cid
        )
    ]
    assert request_id.startswith("reconciler-")

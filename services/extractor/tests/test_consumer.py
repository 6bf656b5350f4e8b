"""The consumer on a real RabbitMQ: acks after commit, dead-letters what cannot be
processed, keeps the queue flowing, and glia-admin brings dead letters back."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import pytest

from glia_common.messaging import DEAD_LETTER_QUEUE_NAME, DELIVERY_LIMIT, EXCHANGE_NAME
from glia_extractor.admin import cmd_dlq
from glia_extractor.main import create_app

pytestmark = pytest.mark.integration


def request_body(cid: uuid.UUID | str, user: str) -> bytes:
    return json.dumps(
        {
            "conversation_id": str(cid),
            "user_id": user,
            "request_id": f"req-{uuid.uuid4().hex[:8]}",
            "requested_at": datetime.now(UTC).isoformat(),
        }
    ).encode()


async def publish(
    amqp_url: str,
    body: bytes,
    message_id: str,
    *,
    to_dlq: bool = False,
    headers: dict[str, Any] | None = None,
) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        message = aio_pika.Message(
            body,
            message_id=message_id,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=headers,
        )
        if to_dlq:
            await channel.default_exchange.publish(message, routing_key=DEAD_LETTER_QUEUE_NAME)
        else:
            exchange = await channel.get_exchange(EXCHANGE_NAME)
            await exchange.publish(message, routing_key="extraction.requested")
    finally:
        await connection.close()


async def dlq_has(amqp_url: str, message_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """Peek at the DLQ (nothing is taken off it) until message_id shows up."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        connection = await aio_pika.connect(amqp_url)
        try:
            channel = await connection.channel()
            queue = await channel.get_queue(DEAD_LETTER_QUEUE_NAME)
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                if message.message_id == message_id:
                    return dict(message.headers or {})
        finally:
            await connection.close()  # unacked messages go back to the DLQ
        await asyncio.sleep(0.2)
    raise AssertionError(f"{message_id} never reached the DLQ")


async def wait_current(
    admin_db: asyncpg.Connection, cid: uuid.UUID, timeout_s: float = 20.0
) -> None:
    for _ in range(int(timeout_s / 0.1)):
        if await admin_db.fetchval(
            "SELECT count(*) FROM extraction_state WHERE conversation_id = $1", cid
        ):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("cards never appeared")


@pytest.fixture
async def extractor(serve: Any, settings_factory: Any) -> Any:
    served = await serve(create_app(settings_factory(reconcile_interval_s=3600)))
    await asyncio.sleep(0.5)  # the consumer starts in the background
    return served


async def test_malformed_message_is_dead_lettered_at_once_and_the_queue_keeps_flowing(
    extractor: Any, infra: Any, seed: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    poison_id = f"malformed-{uuid.uuid4().hex[:8]}"
    await publish(infra.amqp_url, b'{"conversation_id": "not a uuid"', poison_id)
    headers = await dlq_has(infra.amqp_url, poison_id)
    assert headers.get("x-delivery-count") in (None, 0), "dead-lettered on the first delivery"
    cid = await seed(user, ["after the poison", "still flowing"])
    await publish(infra.amqp_url, request_body(cid, user), f"ok-{uuid.uuid4().hex[:8]}")
    await wait_current(admin_db, cid)


async def test_a_run_continues_the_trace_its_message_carries(
    extractor: Any, infra: Any, seed: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    # No span is exported here: the trace context alone crosses the queue.
    trace_id = uuid.uuid4().hex
    cid = await seed(user, ["traced", "turn"])
    await publish(
        infra.amqp_url,
        request_body(cid, user),
        f"traced-{uuid.uuid4().hex[:8]}",
        headers={"traceparent": f"00-{trace_id}-{'1' * 16}-01"},
    )
    await wait_current(admin_db, cid)
    assert (
        await admin_db.fetchval(
            "SELECT trace_id FROM extraction_runs WHERE conversation_id = $1", cid
        )
        == trace_id
    )
    # A message without one still gets a trace of its own.
    other = await seed(user, ["untraced"])
    await publish(infra.amqp_url, request_body(other, user), f"untraced-{uuid.uuid4().hex[:8]}")
    await wait_current(admin_db, other)
    own = await admin_db.fetchval(
        "SELECT trace_id FROM extraction_runs WHERE conversation_id = $1", other
    )
    assert own and len(own) == 32 and own != trace_id and int(own, 16) != 0


async def test_failing_message_is_retried_up_to_the_delivery_limit_then_dead_lettered(
    extractor: Any, infra: Any, seed: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    # Well-formed, but the NUL byte makes every attempt fail inside PostgreSQL.
    poison_id = f"poison-{uuid.uuid4().hex[:8]}"
    await publish(infra.amqp_url, request_body(uuid.uuid4(), "bad\x00user"), poison_id)
    cid = await seed(user, ["meanwhile", "other work"])
    await publish(infra.amqp_url, request_body(cid, user), f"ok-{uuid.uuid4().hex[:8]}")
    await wait_current(admin_db, cid)
    headers = await dlq_has(infra.amqp_url, poison_id)
    assert int(headers.get("x-delivery-count") or DELIVERY_LIMIT) >= DELIVERY_LIMIT - 1


async def test_dlq_replay_brings_messages_back(
    extractor: Any,
    infra: Any,
    settings_factory: Any,
    seed: Any,
    user: str,
    admin_db: asyncpg.Connection,
) -> None:
    cid = await seed(user, ["parked in the DLQ", "waiting"])
    message_id = f"parked-{uuid.uuid4().hex[:8]}"
    await publish(infra.amqp_url, request_body(cid, user), message_id, to_dlq=True)
    await dlq_has(infra.amqp_url, message_id)
    args = argparse.Namespace(action="replay", limit=1000, json=False)
    assert await cmd_dlq(settings_factory(), args) == 0
    await wait_current(admin_db, cid)


async def test_metrics_and_health(extractor: Any) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=extractor.base_url) as client:
        assert (await client.get("/healthz")).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert "glia_extraction_runs_total" in metrics
        assert "glia_extraction_duplicates_skipped_total" in metrics


def test_which_errors_are_transient() -> None:
    import asyncpg
    from sqlalchemy.exc import OperationalError

    from glia_extractor.handlers.extraction import is_transient

    assert is_transient(asyncpg.ConnectionDoesNotExistError("gone"))
    assert is_transient(asyncpg.InterfaceError("connection is closed"))
    assert is_transient(asyncpg.AdminShutdownError("terminating"))
    assert is_transient(OperationalError("x", {}, Exception("y")))
    assert is_transient(TimeoutError())
    assert not is_transient(asyncpg.CharacterNotInRepertoireError("NUL"))
    assert not is_transient(ValueError("bug"))

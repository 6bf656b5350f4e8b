"""The RabbitMQ permissions deploy/README.md gives each service are enough for a turn to
reach current cards, and keep the chat API's user from publishing operator replays."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import aio_pika
import aiormq
import asyncpg
import httpx
import pytest

from glia_card_query.main import create_app as create_cards_app
from glia_chat_api.main import create_app as create_chat_app
from glia_e2e.sse import post_message
from glia_extractor.main import create_app as create_extractor_app

pytestmark = pytest.mark.e2e

# configure, write, read: as in deploy/README.md "RabbitMQ users".
PERMISSIONS = {
    "chat": (
        r"^glia(\.extraction(\.dlq)?)?$",
        r"^(glia|glia\.extraction|amq\.default)$",
        r"^(glia|glia\.extraction)$",
    ),
    "extractor": (
        r"^glia(\.operator|\.extraction(\.dlq)?)?$",
        r"^(glia|glia\.extraction|amq\.default)$",
        r"^glia(\.operator|\.extraction)?$",
    ),
    "cards": ("^$", "^$", "^$"),
}


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True)


@pytest.fixture
def users(infra: Any) -> Any:
    vhost = f"glia-perm-{secrets.token_hex(4)}"
    rabbitmqctl("add_vhost", vhost)
    urls = {}
    try:
        for name, (configure, write, read) in PERMISSIONS.items():
            user, password = f"{vhost}-{name}", secrets.token_hex(8)
            rabbitmqctl("add_user", user, password)
            rabbitmqctl("set_permissions", "-p", vhost, user, configure, write, read)
            broker = urlsplit(infra.amqp_url)
            host = f"{broker.hostname}:{broker.port or 5672}"
            urls[name] = f"amqp://{user}:{password}@{host}/{quote(vhost, safe='')}"
        yield urls
    finally:
        for name in PERMISSIONS:
            subprocess.run(
                ["rabbitmqctl", "-q", "delete_user", f"{vhost}-{name}"], capture_output=True
            )
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)


async def test_least_privilege_users_run_glia(
    users: dict[str, str],
    serve: Any,
    settings_factory: Any,
    mint: Any,
    user: str,
    admin_db: asyncpg.Connection,
) -> None:
    chat = await serve(create_chat_app(settings_factory(amqp_url=users["chat"])))
    await serve(
        create_extractor_app(
            settings_factory(amqp_url=users["extractor"], reconcile_interval_s=3600)
        )
    )
    cards = await serve(create_cards_app(settings_factory(amqp_url=users["cards"])))
    token = mint(user)
    async with httpx.AsyncClient(base_url=chat.base_url, timeout=30) as client:
        cid = (
            await client.post(
                "/v1/conversations", json={}, headers={"Authorization": f"Bearer {token}"}
            )
        ).json()["id"]
        assert (await post_message(client, cid, "We decided to ship on Friday.", token)).names()[
            -1
        ] == "done"
    for _ in range(300):
        if await admin_db.fetchval(
            "SELECT count(*) FROM extraction_state WHERE conversation_id = $1", uuid.UUID(cid)
        ):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the cards never came")
    async with httpx.AsyncClient(base_url=cards.base_url, timeout=30) as client:
        assert (await client.get("/readyz")).status_code == 200

    # The chat API's user cannot publish to the operator exchange.
    connection = await aio_pika.connect(users["chat"])
    try:
        channel = await connection.channel(publisher_confirms=True)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            exchange = await channel.get_exchange("glia.operator", ensure=False)
            await exchange.publish(
                aio_pika.Message(json.dumps({"forged": True}).encode()),
                routing_key="extraction.replay",
            )
    finally:
        await connection.close()

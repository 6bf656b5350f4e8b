"""The isolation matrix, from the outside: user B with user A's ids, bad tokens on
every route, and the app role without a user scope."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from glia_common.models import USER_TABLES
from glia_e2e.api import bearer
from glia_e2e.sse import post_message
from glia_e2e.tokens import bad_tokens

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def alice_data(system: Any, mint: Any) -> dict[str, Any]:
    """A conversation of Alice's with a turn and current cards."""
    alice = f"alice-{uuid.uuid4().hex[:8]}"
    token = mint(alice)
    async with httpx.AsyncClient(base_url=system.chat.url, timeout=30) as chat:
        cid = (
            await chat.post("/v1/conversations", json={"title": "Alice's"}, headers=bearer(token))
        ).json()["id"]
        stream = await post_message(chat, cid, "My budget is 5000 EUR. We decided to go.", token)
        assert stream.names()[-1] == "done"
    async with httpx.AsyncClient(base_url=system.cards.url, timeout=30) as cards:
        for _ in range(200):
            body = (
                await cards.get("/v1/cards", params={"conversation_id": cid}, headers=bearer(token))
            ).json()
            if body["extraction"]["state"] == "current":
                break
            await asyncio.sleep(0.1)
    assert body["items"]
    return {
        "user": alice,
        "cid": cid,
        "card_id": body["items"][0]["id"],
        "cards": body,
        "stream": stream,
    }


def routes(cid: str, card_id: str) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(service, method, path, json body) for every /v1 route, aimed at Alice's ids."""
    return [
        ("chat", "GET", "/v1/conversations", None),
        ("chat", "POST", "/v1/conversations", {"title": "x"}),
        ("chat", "GET", f"/v1/conversations/{cid}", None),
        ("chat", "DELETE", f"/v1/conversations/{cid}", None),
        ("chat", "POST", f"/v1/conversations/{cid}/messages", {"content": "let me in"}),
        ("cards", "GET", f"/v1/cards?conversation_id={cid}", None),
        ("cards", "GET", "/v1/cards", None),
        ("cards", "GET", f"/v1/cards/{card_id}", None),
        ("cards", "GET", f"/v1/cards/events?conversation_id={cid}", None),
    ]


async def test_another_user_gets_404_and_sees_nothing(
    system: Any, mint: Any, alice_data: dict[str, Any]
) -> None:
    bob = bearer(mint(f"bob-{uuid.uuid4().hex[:8]}"))
    cid, card_id = alice_data["cid"], alice_data["card_id"]
    async with httpx.AsyncClient(timeout=30) as client:
        for service, method, path, body in routes(cid, card_id):
            base = system.chat.url if service == "chat" else system.cards.url
            r = await client.request(method, base + path, json=body, headers=bob)
            if method == "POST" and path == "/v1/conversations":
                assert r.status_code == 201  # Bob may create his own
            elif path in ("/v1/conversations", "/v1/cards"):
                assert r.status_code == 200
                assert r.json()["items"] == [] or all(
                    item.get("conversation_id", item.get("id")) != cid for item in r.json()["items"]
                )
                assert cid not in r.text and card_id not in r.text
            else:
                assert r.status_code == 404, (method, path, r.status_code)
                assert r.headers["content-type"].startswith("application/problem+json")
                assert cid not in r.text or "conversation_id" not in r.text

    # Alice's data is intact.
    alice = bearer(mint(alice_data["user"]))
    async with httpx.AsyncClient(timeout=30) as client:
        conv = (await client.get(f"{system.chat.url}/v1/conversations/{cid}", headers=alice)).json()
        assert len(conv["messages"]) == 2 and conv["title"] == "Alice's"
        cards = (
            await client.get(
                f"{system.cards.url}/v1/cards", params={"conversation_id": cid}, headers=alice
            )
        ).json()
        assert [c["id"] for c in cards["items"]] == [c["id"] for c in alice_data["cards"]["items"]]


async def test_every_bad_token_is_401_on_every_route(
    system: Any, jwt_secret: str, alice_data: dict[str, Any]
) -> None:
    tokens = bad_tokens(jwt_secret, alice_data["user"])
    async with httpx.AsyncClient(timeout=30) as client:
        for service, method, path, body in routes(alice_data["cid"], alice_data["card_id"]):
            base = system.chat.url if service == "chat" else system.cards.url
            for name, token in [("none", None), *tokens.items()]:
                headers = bearer(token) if token else {}
                r = await client.request(method, base + path, json=body, headers=headers)
                assert r.status_code == 401, (name, method, path, r.status_code)
                assert r.headers.get_list("www-authenticate") == ["Bearer"], (name, path)
                assert r.headers["content-type"].startswith("application/problem+json")


async def test_app_role_without_user_scope_sees_no_rows(
    infra: Any, alice_data: dict[str, Any]
) -> None:
    conn = await asyncpg.connect(infra.app_url)
    try:
        for table in USER_TABLES:
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        # Setting another user's id shows only that user's rows, never Alice's.
        async with conn.transaction():
            await conn.execute("SELECT set_config('glia.user_id', 'nobody', true)")
            assert await conn.fetchval("SELECT count(*) FROM conversations") == 0
    finally:
        await conn.close()

"""Black-box: the three real processes, driven over HTTP as a client would."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from glia_e2e.api import bearer
from glia_e2e.sse import post_message

pytestmark = pytest.mark.e2e


async def wait_for_freshness(
    cards: Any, cid: str, token: str, state: str, timeout_s: float = 20.0
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        r = await cards.get("/v1/cards", params={"conversation_id": cid}, headers=bearer(token))
        assert r.status_code == 200, r.text
        body = r.json()
        if body["extraction"]["state"] == state:
            return dict(body)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"freshness stayed {body['extraction']}")
        await asyncio.sleep(0.1)


async def test_chat_turn_to_current_cards(
    sys_: Any, mint: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    token = mint(user)
    async with sys_.client("chat") as chat, sys_.client("cards") as cards:
        cid = (
            await chat.post("/v1/conversations", json={"title": "e2e"}, headers=bearer(token))
        ).json()["id"]
        fresh = (
            await cards.get("/v1/cards", params={"conversation_id": cid}, headers=bearer(token))
        ).json()
        assert fresh["extraction"] == {"state": "none", "source_hash": None, "derived_at": None}
        assert fresh["items"] == []

        # Slow extraction so the pending state is observable.
        await sys_.llm_control.aconfigure(target="extraction", mode="slow", delay_s=1.5)
        stream = await post_message(
            chat, cid, "We decided to launch in May. TODO: book the venue.", token
        )
        assert stream.names()[0] == "start" and stream.names()[-1] == "done"
        start = stream.first("start").data

        await wait_for_freshness(cards, cid, token, "pending", timeout_s=5)
        body = await wait_for_freshness(cards, cid, token, "current")
        assert body["items"], "cards were derived"
        assert body["items"][0]["kind"] == "summary"
        assert all(c["conversation_id"] == cid for c in body["items"])
        assert {c["origin"] for c in body["items"]} == {"llm"}
        message_ids = {start["user_message_id"], start["assistant_message_id"]}
        assert set(body["items"][0]["source_message_ids"]) <= message_ids

        run = await admin_db.fetchrow(
            "SELECT * FROM extraction_runs WHERE conversation_id = $1", uuid.UUID(cid)
        )
        assert run["status"] == "succeeded" and run["trace_id"] == start["trace_id"]
        assert run["request_id"] == start["request_id"] and run["fallback_used"] is False
        assert run["failure_class"] is None and run["card_count"] == len(body["items"])

        # A new turn makes the cards pending again, then current.
        await sys_.llm_control.aconfigure(target="extraction", mode="slow", delay_s=1.5)
        await post_message(chat, cid, "What is the budget?", token)
        await wait_for_freshness(cards, cid, token, "pending", timeout_s=5)
        await wait_for_freshness(cards, cid, token, "current")


@pytest.mark.parametrize(
    ("mode", "failure_class"),
    [
        ("http_401", "auth"),
        ("http_403", "auth"),
        ("http_429", "quota"),
        ("http_500", "provider_error"),
        ("hang", "timeout"),
        ("reset", "network"),
        ("garbage", "schema"),
        ("non_json_content", "schema"),
        ("schema_invalid", "schema"),
    ],
)
async def test_every_llm_failure_falls_back_with_its_class(
    sys_: Any, mint: Any, user: str, admin_db: asyncpg.Connection, mode: str, failure_class: str
) -> None:
    await sys_.llm_control.aconfigure(target="extraction", mode=mode)
    token = mint(user)
    async with sys_.client("chat") as chat, sys_.client("cards") as cards:
        cid = (await chat.post("/v1/conversations", json={}, headers=bearer(token))).json()["id"]
        stream = await post_message(
            chat, cid, "Is the report due on Friday? We decided yes.", token
        )
        assert stream.names()[-1] == "done"
        body = await wait_for_freshness(cards, cid, token, "current")
        assert body["items"] and {c["origin"] for c in body["items"]} == {"fallback"}
    run = await admin_db.fetchrow(
        "SELECT status, fallback_used, failure_class, provider, model FROM extraction_runs "
        "WHERE conversation_id = $1",
        uuid.UUID(cid),
    )
    assert dict(run) | {"provider": None} == {
        "status": "succeeded",
        "fallback_used": True,
        "failure_class": failure_class,
        "provider": None,
        "model": "gpt-4o-mini",
    }

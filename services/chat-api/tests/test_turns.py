"""A turn over real HTTP: the SSE protocol and what is stored before each event."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from glia_e2e.api import new_conversation
from glia_e2e.sse import iter_events, post_message

pytestmark = pytest.mark.integration


async def messages_of(client: httpx.AsyncClient, cid: str, token: str) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/conversations/{cid}", headers={"Authorization": f"Bearer {token}"})
    return list(r.json()["messages"])


async def wait_for(predicate: Any, timeout_s: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_stream_follows_the_protocol_and_matches_storage(
    chat: httpx.AsyncClient, mint: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    token = mint(user)
    cid = await new_conversation(chat, token)
    stream = await post_message(chat, cid, "We decided to ship on Friday.", token)

    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    names = stream.names()
    assert names[0] == "start" and names[-1] == "done"
    assert set(names[1:-1]) == {"delta"}
    assert [e.id for e in stream.events] == [str(i) for i in range(len(stream.events))]
    assert all(len(e.raw_data_lines) == 1 for e in stream.events)

    start = stream.first("start").data
    assert start["conversation_id"] == cid
    assert re.fullmatch(r"[0-9a-f]{32}", start["trace_id"]) and start["trace_id"] != "0" * 32
    assert start["request_id"] == stream.headers["x-request-id"]
    done = stream.first("done").data
    assert done["assistant_message_id"] == start["assistant_message_id"]
    assert done["finish_reason"] == "stop"

    messages = await messages_of(chat, cid, token)
    assert [(m["id"], m["role"], m["status"]) for m in messages] == [
        (start["user_message_id"], "user", "complete"),
        (start["assistant_message_id"], "assistant", "complete"),
    ]
    assert messages[0]["content"] == "We decided to ship on Friday."
    assert messages[1]["content"] == stream.text()

    # The same transaction requested extraction, carrying the request's trace.
    row = await admin_db.fetchrow(
        "SELECT payload, headers FROM outbox WHERE conversation_id = $1", uuid.UUID(cid)
    )
    assert row is not None
    import json

    payload, headers = json.loads(row["payload"]), json.loads(row["headers"])
    assert payload["conversation_id"] == cid and payload["user_id"] == user
    assert payload["request_id"] == start["request_id"]
    assert headers["traceparent"].split("-")[1] == start["trace_id"]


async def test_each_turn_sees_the_conversation(
    chat: httpx.AsyncClient, mint: Any, user: str
) -> None:
    token = mint(user)
    cid = await new_conversation(chat, token)
    for i in range(3):
        stream = await post_message(chat, cid, f"message {i}", token)
        assert stream.terminal is not None and stream.terminal.event == "done"
        assert f"turn {i + 1}" in stream.text()
    assert len(await messages_of(chat, cid, token)) == 6


async def test_the_user_message_is_committed_before_start(
    chat: httpx.AsyncClient, mint: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    token = mint(user)
    cid = await new_conversation(chat, token)
    async with chat.stream(
        "POST",
        f"/v1/conversations/{cid}/messages",
        json={"content": "first"},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        async for event in iter_events(response):
            assert event.event == "start"
            status = await admin_db.fetchval(
                "SELECT status FROM messages WHERE id = $1",
                uuid.UUID(event.data["user_message_id"]),
            )
            assert status == "complete"
            break


@pytest.mark.parametrize(
    "body",
    [
        {"content": ""},
        {"content": "x" * 32_001},
        {},
        {"content": 5},
        {"content": "ok", "x": 1},
        {"content": "nul \u0000 inside"},  # PostgreSQL text cannot store it
    ],
)
async def test_bad_message_is_a_plain_422(
    chat: httpx.AsyncClient, mint: Any, user: str, body: dict[str, Any]
) -> None:
    token = mint(user)
    cid = await new_conversation(chat, token)
    r = await chat.post(
        f"/v1/conversations/{cid}/messages", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await messages_of(chat, cid, token) == []


async def test_longest_allowed_message_is_accepted(
    chat: httpx.AsyncClient, mint: Any, user: str
) -> None:
    token = mint(user)
    cid = await new_conversation(chat, token)
    stream = await post_message(chat, cid, "y" * 32_000, token)
    assert stream.terminal is not None and stream.terminal.event == "done"


async def test_message_to_missing_conversation_is_404(
    chat: httpx.AsyncClient, mint: Any, user: str
) -> None:
    stream = await post_message(chat, str(uuid.uuid4()), "hi", mint(user))
    assert stream.status == 404
    assert stream.headers["content-type"].startswith("application/problem+json")


async def test_idempotent_retry_replays_without_a_second_message(
    chat: httpx.AsyncClient, mint: Any, user: str
) -> None:
    token = mint(user)
    cid = await new_conversation(chat, token)
    first = await post_message(chat, cid, "remember this", token, idempotency_key="key-1")
    again = await post_message(chat, cid, "remember this", token, idempotency_key="key-1")
    assert again.status == 200
    assert again.names()[0] == "start" and again.names()[-1] == "done"
    assert again.first("start").data == first.first("start").data
    assert again.text() == first.text()
    # The same events, deltas included: ids and texts as first streamed.
    assert [(e.event, e.id, e.data) for e in again.events] == [
        (e.event, e.id, e.data) for e in first.events
    ]
    assert len(await messages_of(chat, cid, token)) == 2

    different = await chat.post(
        f"/v1/conversations/{cid}/messages",
        json={"content": "something else"},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "key-1"},
    )
    assert different.status_code == 422
    assert different.json()["code"] == "idempotency_key_reused"
    assert len(await messages_of(chat, cid, token)) == 2


async def test_idempotency_keys_are_per_user(chat: httpx.AsyncClient, mint: Any, user: str) -> None:
    other = user + "-other"
    for u in (user, other):
        token = mint(u)
        cid = await new_conversation(chat, token)
        stream = await post_message(chat, cid, "same words", token, idempotency_key="shared-key")
        assert stream.first("start").data["conversation_id"] == cid


async def test_bad_idempotency_key_is_422(chat: httpx.AsyncClient, mint: Any, user: str) -> None:
    token = mint(user)
    cid = await new_conversation(chat, token)
    r = await chat.post(
        f"/v1/conversations/{cid}/messages",
        json={"content": "hi"},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "k" * 300},
    )
    assert r.status_code == 422


async def test_delete_removes_messages_and_outbox_rows(
    chat: httpx.AsyncClient, mint: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    token = mint(user)
    cid = await new_conversation(chat, token)
    await post_message(chat, cid, "to be deleted", token)
    r = await chat.delete(f"/v1/conversations/{cid}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204
    for table in ("messages", "turns", "outbox"):
        count = await admin_db.fetchval(
            f"SELECT count(*) FROM {table} WHERE conversation_id = $1", uuid.UUID(cid)
        )
        assert count == 0, table

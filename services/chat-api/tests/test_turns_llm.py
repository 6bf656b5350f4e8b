"""Turns against the fake OpenAI-compatible server: success, every failure, disconnects."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from glia_e2e.api import new_conversation
from glia_e2e.sse import iter_events, post_message
from glia_fakes.llm import DEFAULT_CHAT_REPLY

pytestmark = pytest.mark.integration


async def stored(admin_db: asyncpg.Connection, message_id: str) -> asyncpg.Record:
    row = await admin_db.fetchrow(
        "SELECT status, content FROM messages WHERE id = $1", uuid.UUID(message_id)
    )
    assert row is not None
    return row


async def test_llm_reply_streams_and_is_stored(
    chat_llm: httpx.AsyncClient, llm: Any, mint: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    token = mint(user)
    cid = await new_conversation(chat_llm, token)
    stream = await post_message(chat_llm, cid, "hello model", token)
    assert stream.names()[-1] == "done"
    assert stream.text() == DEFAULT_CHAT_REPLY
    assert len([e for e in stream.events if e.event == "delta"]) == 20
    assert stream.first("done").data["usage"]["total_tokens"] > 0
    row = await stored(admin_db, stream.first("start").data["assistant_message_id"])
    assert (row["status"], row["content"]) == ("complete", DEFAULT_CHAT_REPLY)
    sent = llm.requests("chat")[-1]["body"]
    assert sent["stream"] is True
    assert sent["messages"][-1] == {"role": "user", "content": "hello model"}


async def test_the_model_sees_the_latest_complete_messages_in_order(
    start_chat: Any, llm: Any, mint: Any, user: str
) -> None:
    """The history window: the last N complete messages, oldest first, ending with the
    new message; a failed reply is not part of it."""
    chat = await start_chat(
        llm_base_url=llm.base_url,
        llm_api_key="test-key",
        llm_timeout_s=2.0,
        chat_history_messages=4,
    )
    token = mint(user)
    cid = await new_conversation(chat, token)
    for text in ("one", "two"):
        assert (await post_message(chat, cid, text, token)).names()[-1] == "done"
    llm.configure(target="chat", mode="http_500")
    assert (await post_message(chat, cid, "three", token)).names()[-1] == "error"
    llm.configure(target="chat", mode="ok")
    assert (await post_message(chat, cid, "four", token)).names()[-1] == "done"
    sent = [
        (m["role"], m["content"])
        for m in llm.requests("chat")[-1]["body"]["messages"]
        if m["role"] != "system"
    ]
    assert sent == [
        ("user", "two"),
        ("assistant", DEFAULT_CHAT_REPLY),
        ("user", "three"),
        ("user", "four"),
    ]


async def test_length_finish_reason_is_reported(
    chat_llm: httpx.AsyncClient, llm: Any, mint: Any, user: str
) -> None:
    llm.configure(target="chat", finish_reason="length")
    token = mint(user)
    stream = await post_message(chat_llm, await new_conversation(chat_llm, token), "hi", token)
    assert stream.first("done").data["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("mode", "code", "retryable"),
    [
        ("http_401", "llm_auth", False),
        ("http_403", "llm_auth", False),
        ("http_429", "llm_rate_limited", True),
        ("http_500", "llm_error", True),
        ("garbage", "llm_bad_response", True),
        ("hang", "llm_timeout", True),
    ],
)
async def test_llm_failure_before_any_text_ends_with_error_and_failed_message(
    chat_llm: httpx.AsyncClient,
    llm: Any,
    mint: Any,
    user: str,
    admin_db: asyncpg.Connection,
    mode: str,
    code: str,
    retryable: bool,
) -> None:
    llm.configure(target="chat", mode=mode)
    token = mint(user)
    cid = await new_conversation(chat_llm, token)
    stream = await post_message(chat_llm, cid, "hello", token)
    assert stream.status == 200
    assert stream.names()[0] == "start" and stream.names()[-1] == "error"
    assert stream.terminal is not None
    assert stream.terminal.data["code"] == code
    assert stream.terminal.data["retryable"] is retryable
    assert stream.terminal.data["message"]
    row = await stored(admin_db, stream.first("start").data["assistant_message_id"])
    assert row["status"] == "failed"
    assert row["content"] == stream.text()
    # A failed turn still ends the turn: extraction is requested.
    assert (
        await admin_db.fetchval(
            "SELECT count(*) FROM outbox WHERE conversation_id = $1", uuid.UUID(cid)
        )
        == 1
    )


@pytest.mark.parametrize("mode", ["reset", "hang_mid_stream"])
async def test_llm_failure_mid_stream_keeps_the_partial_text(
    chat_llm: httpx.AsyncClient,
    llm: Any,
    mint: Any,
    user: str,
    admin_db: asyncpg.Connection,
    mode: str,
) -> None:
    llm.configure(target="chat", mode=mode)
    token = mint(user)
    stream = await post_message(chat_llm, await new_conversation(chat_llm, token), "hello", token)
    assert stream.names()[-1] == "error"
    assert stream.text(), "some deltas arrive before the fault"
    assert DEFAULT_CHAT_REPLY.startswith(stream.text())
    row = await stored(admin_db, stream.first("start").data["assistant_message_id"])
    assert (row["status"], row["content"]) == ("failed", stream.text())


async def test_one_llm_call_per_turn_by_default(
    chat_llm: httpx.AsyncClient, llm: Any, mint: Any, user: str
) -> None:
    """A failed call is answered at once: no SDK retry unless GLIA_LLM_MAX_RETRIES asks."""
    token = mint(user)
    cid = await new_conversation(chat_llm, token)
    before = len(llm.requests("chat"))
    llm.configure(target="chat", mode="http_500", count=1)
    stream = await post_message(chat_llm, cid, "hello", token)
    assert stream.names()[-1] == "error"
    assert len(llm.requests("chat")) - before == 1


async def test_a_turn_ended_elsewhere_does_not_end_in_done(
    chat_llm: httpx.AsyncClient, llm: Any, mint: Any, user: str
) -> None:
    """The conversation is deleted while its reply streams: the stored message is gone,
    so the stream must not claim a stored, complete reply."""
    llm.configure(target="chat", mode="slow", chunk_delay_s=0.05)
    token = mint(user)
    headers = {"Authorization": f"Bearer {token}"}
    cid = await new_conversation(chat_llm, token)
    names: list[str] = []
    terminal = None
    async with chat_llm.stream(
        "POST", f"/v1/conversations/{cid}/messages", json={"content": "hi"}, headers=headers
    ) as response:
        async for event in iter_events(response):
            names.append(event.event)
            if names.count("delta") == 1:
                assert (
                    await chat_llm.delete(f"/v1/conversations/{cid}", headers=headers)
                ).status_code == 204
            if event.event in ("done", "error"):
                terminal = event
    assert names[0] == "start" and "done" not in names
    assert terminal is not None and terminal.event == "error"
    assert terminal.data["code"] == "turn_ended"
    assert terminal.data["retryable"] is False


async def test_a_turn_outlives_its_client(
    chat_llm: httpx.AsyncClient, llm: Any, mint: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    llm.configure(target="chat", mode="slow", chunk_delay_s=0.2)
    token = mint(user)
    cid = await new_conversation(chat_llm, token)
    received = ""
    assistant_id = None
    async with chat_llm.stream(
        "POST",
        f"/v1/conversations/{cid}/messages",
        json={"content": "tell me a long story"},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        async for event in iter_events(response):
            if event.event == "start":
                assistant_id = event.data["assistant_message_id"]
            elif event.event == "delta":
                received += event.data["text"]
                if len(received) > 20:
                    break  # hang up mid-stream
    assert assistant_id is not None

    async def settled() -> asyncpg.Record | None:
        row = await stored(admin_db, assistant_id)
        return row if row["status"] != "streaming" else None

    for _ in range(200):
        row = await settled()
        if row:
            break
        await asyncio.sleep(0.05)
    assert row is not None
    # The client hung up mid-stream; the reply was still stored to the end.
    assert row["status"] == "complete"
    assert row["content"] == DEFAULT_CHAT_REPLY and row["content"].startswith(received)
    assert (
        await admin_db.fetchval(
            "SELECT count(*) FROM outbox WHERE conversation_id = $1", uuid.UUID(cid)
        )
        == 1
    )

    conversation = (
        await chat_llm.get(f"/v1/conversations/{cid}", headers={"Authorization": f"Bearer {token}"})
    ).json()
    assert [m["status"] for m in conversation["messages"]] == ["complete", "complete"]


async def test_same_key_while_running_is_409(
    chat_llm: httpx.AsyncClient, llm: Any, mint: Any, user: str
) -> None:
    llm.configure(target="chat", mode="slow", chunk_delay_s=0.1)
    token = mint(user)
    cid = await new_conversation(chat_llm, token)
    first = asyncio.create_task(
        post_message(chat_llm, cid, "slow one", token, idempotency_key="k-409")
    )
    await asyncio.sleep(0.5)
    r = await chat_llm.post(
        f"/v1/conversations/{cid}/messages",
        json={"content": "slow one"},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "k-409"},
    )
    assert r.status_code == 409
    assert r.json()["code"] == "request_in_progress"
    done = await first
    assert done.names()[-1] == "done"
    replay = await post_message(chat_llm, cid, "slow one", token, idempotency_key="k-409")
    assert replay.text() == done.text() and replay.names()[-1] == "done"


async def test_replay_of_a_failed_turn_repeats_the_error(
    chat_llm: httpx.AsyncClient, llm: Any, mint: Any, user: str
) -> None:
    llm.configure(target="chat", mode="http_429")
    token = mint(user)
    cid = await new_conversation(chat_llm, token)
    first = await post_message(chat_llm, cid, "x", token, idempotency_key="k-fail")
    llm.configure(target="chat", mode="ok")
    again = await post_message(chat_llm, cid, "x", token, idempotency_key="k-fail")
    assert again.names() == ["start", "error"]
    assert again.terminal is not None and first.terminal is not None
    assert again.terminal.data == first.terminal.data
    assert len(llm.requests("chat")) >= 1

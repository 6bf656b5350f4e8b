"""Resumable streams and cancel: a reply's events again (all, or after Last-Event-ID),
live or from the database, from the replica that runs the turn or another one."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from glia_e2e.api import bearer, new_conversation
from glia_e2e.sse import Event, iter_events, post_message, resume
from glia_fakes.llm import DEFAULT_CHAT_REPLY

pytestmark = pytest.mark.integration


def shape(events: list[Event]) -> list[tuple[str | None, str | None, Any]]:
    return [(e.event, e.id, e.data) for e in events]


async def read_until_deltas(
    client: httpx.AsyncClient, cid: str, token: str, deltas: int
) -> tuple[str, list[Event]]:
    """Start a turn and hang up after ``deltas`` deltas: (assistant id, events seen)."""
    seen: list[Event] = []
    async with client.stream(
        "POST",
        f"/v1/conversations/{cid}/messages",
        json={"content": "go on"},
        headers=bearer(token),
    ) as response:
        async for event in iter_events(response):
            seen.append(event)
            if sum(e.event == "delta" for e in seen) == deltas:
                break
    return str(seen[0].data["assistant_message_id"]), seen


async def stored(admin_db: asyncpg.Connection, message_id: str) -> asyncpg.Record:
    row = await admin_db.fetchrow(
        "SELECT status, content FROM messages WHERE id = $1", uuid.UUID(message_id)
    )
    assert row is not None
    return row


async def test_a_finished_turn_replays_with_the_original_ids(
    chat_llm: httpx.AsyncClient, mint: Any, user: str
) -> None:
    token = mint(user)
    cid = await new_conversation(chat_llm, token)
    original = await post_message(chat_llm, cid, "hello", token)
    mid = original.first("start").data["assistant_message_id"]

    again = await resume(chat_llm, cid, mid, token)
    assert again.status == 200
    assert shape(again.events) == shape(original.events)

    after = await resume(chat_llm, cid, mid, token, "3")
    assert shape(after.events) == shape(original.events[4:])
    by_query = await resume(chat_llm, cid, mid, token, "3", as_query=True)
    assert shape(by_query.events) == shape(after.events)
    text_before = "".join(e.data["text"] for e in original.events[1:4])
    assert text_before + after.text() == DEFAULT_CHAT_REPLY

    # Past the end: just the terminal event; the terminal's own id: it again.
    last = original.events[-1]
    for beyond in (last.id, "999"):
        tail = await resume(chat_llm, cid, mid, token, beyond)
        assert shape(tail.events) == shape([last])


async def test_bad_resume_requests(chat_llm: httpx.AsyncClient, mint: Any, user: str) -> None:
    token = mint(user)
    cid = await new_conversation(chat_llm, token)
    original = await post_message(chat_llm, cid, "hello", token)
    start = original.first("start").data
    mid, user_mid = start["assistant_message_id"], start["user_message_id"]

    for bad in ("-1", "abc", "1.5", "9" * 30, "1a"):
        r = await resume(chat_llm, cid, mid, token, bad)
        assert r.status == 422, bad
    # Non-ASCII digits are digits to Python, not event ids.
    r = await resume(chat_llm, cid, mid, token, "\u0663", as_query=True)
    assert r.status == 422
    # Another user's reply, a user message, an unknown id, another conversation: 404.
    assert (await resume(chat_llm, cid, mid, mint(user + "-other"))).status == 404
    assert (await resume(chat_llm, cid, user_mid, token)).status == 404
    assert (await resume(chat_llm, cid, str(uuid.uuid4()), token)).status == 404
    other = await new_conversation(chat_llm, token)
    assert (await resume(chat_llm, other, mid, token)).status == 404
    # Unauthenticated: 401.
    r = await chat_llm.get(f"/v1/conversations/{cid}/messages/{mid}/events")
    assert r.status_code == 401


async def test_resume_mid_turn_on_the_same_replica(
    chat_llm: httpx.AsyncClient, llm: Any, mint: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    llm.configure(target="chat", mode="slow", chunk_delay_s=0.05)
    token = mint(user)
    cid = await new_conversation(chat_llm, token)
    mid, seen = await read_until_deltas(chat_llm, cid, token, 3)

    rest = await resume(chat_llm, cid, mid, token, seen[-1].id)
    assert rest.names()[-1] == "done"
    ids = [int(e.id or -1) for e in seen + rest.events]
    assert ids == list(range(len(ids))), "no event lost or repeated"
    text = "".join(e.data["text"] for e in seen + rest.events if e.event == "delta")
    assert text == DEFAULT_CHAT_REPLY == (await stored(admin_db, mid))["content"]


async def test_resume_mid_turn_on_another_replica(
    start_chat: Any, llm: Any, mint: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    """The turn runs on replica A; the client reconnects to replica B."""
    overrides = {"llm_base_url": llm.base_url, "llm_api_key": "k", "llm_timeout_s": 5.0}
    a, b = await start_chat(**overrides), await start_chat(**overrides)
    await b.app_state.turn_signals.listening.wait()
    llm.configure(target="chat", mode="slow", chunk_delay_s=0.1)
    token = mint(user)
    cid = await new_conversation(a, token)
    mid, seen = await read_until_deltas(a, cid, token, 2)

    rest = await resume(b, cid, mid, token, seen[-1].id)
    assert rest.names()[-1] == "done"
    ids = [int(e.id or -1) for e in seen + rest.events]
    assert ids == list(range(len(ids))), "no event lost or repeated"
    text = "".join(e.data["text"] for e in seen + rest.events if e.event == "delta")
    assert text == DEFAULT_CHAT_REPLY == (await stored(admin_db, mid))["content"]
    # B read it from the database, yet its events are the ones A would have sent.
    on_a = await resume(a, cid, mid, token)
    assert shape(on_a.events[len(seen) :]) == shape(rest.events)


async def test_cancel_ends_the_turn_incomplete(
    chat_llm: httpx.AsyncClient, llm: Any, mint: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    llm.configure(target="chat", mode="slow", chunk_delay_s=0.2)
    token = mint(user)
    cid = await new_conversation(chat_llm, token)
    events: list[Event] = []
    async with chat_llm.stream(
        "POST", f"/v1/conversations/{cid}/messages", json={"content": "go"}, headers=bearer(token)
    ) as response:
        async for event in iter_events(response):
            events.append(event)
            if sum(e.event == "delta" for e in events) == 2:
                mid = events[0].data["assistant_message_id"]
                r = await chat_llm.post(
                    f"/v1/conversations/{cid}/messages/{mid}/cancel", headers=bearer(token)
                )
                assert r.status_code == 202
                assert r.json() == {"assistant_message_id": mid, "status": "incomplete"}
    terminal = events[-1]
    assert terminal.event == "error" and terminal.data["code"] == "cancelled"
    assert terminal.data["retryable"] is False
    row = await stored(admin_db, mid)
    streamed = "".join(e.data["text"] for e in events if e.event == "delta")
    assert row["status"] == "incomplete" and row["content"] == streamed
    assert len(streamed) < len(DEFAULT_CHAT_REPLY)
    assert (
        await admin_db.fetchval(
            "SELECT count(*) FROM outbox WHERE conversation_id = $1", uuid.UUID(cid)
        )
        == 1
    ), "a cancelled turn still requests extraction"
    # The stored outcome replays the same way; cancelling again changes nothing.
    assert (await resume(chat_llm, cid, mid, token)).events[-1].data["code"] == "cancelled"
    r = await chat_llm.post(f"/v1/conversations/{cid}/messages/{mid}/cancel", headers=bearer(token))
    assert r.status_code == 202 and r.json()["status"] == "incomplete"


async def test_cancel_through_another_replica(
    start_chat: Any, llm: Any, mint: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    overrides = {"llm_base_url": llm.base_url, "llm_api_key": "k", "llm_timeout_s": 5.0}
    a, b = await start_chat(**overrides), await start_chat(**overrides)
    await a.app_state.turn_signals.listening.wait()
    llm.configure(target="chat", mode="slow", chunk_delay_s=0.2)
    token = mint(user)
    cid = await new_conversation(a, token)
    events: list[Event] = []
    async with a.stream(
        "POST", f"/v1/conversations/{cid}/messages", json={"content": "go"}, headers=bearer(token)
    ) as response:
        async for event in iter_events(response):
            events.append(event)
            if sum(e.event == "delta" for e in events) == 1:
                mid = events[0].data["assistant_message_id"]
                r = await b.post(
                    f"/v1/conversations/{cid}/messages/{mid}/cancel", headers=bearer(token)
                )
                assert r.status_code == 202 and r.json()["status"] == "incomplete"
    assert events[-1].event == "error" and events[-1].data["code"] == "cancelled"
    assert (await stored(admin_db, mid))["status"] == "incomplete"


async def test_cancel_settles_a_turn_whose_replica_is_gone(
    chat: httpx.AsyncClient, mint: Any, user: str, settings: Any, admin_db: asyncpg.Connection
) -> None:
    """A streaming reply that no replica runs (its process died): cancel settles it."""
    from glia_e2e.seeding import seed_conversation

    token = mint(user)
    cid, (user_mid, mid) = await seed_conversation(
        settings.database_url,
        user,
        [("user", "question", "complete"), ("assistant", "half an ans", "streaming")],
    )
    await admin_db.execute(
        "INSERT INTO turns (id, conversation_id, user_id, user_message_id, assistant_message_id,"
        " request_hash, request_id, trace_id) VALUES ($1, $2, $3, $4, $5, 'h', 'r', $6)",
        uuid.uuid4(),
        cid,
        user,
        user_mid,
        mid,
        "ab" * 16,
    )
    r = await chat.post(f"/v1/conversations/{cid}/messages/{mid}/cancel", headers=bearer(token))
    assert r.status_code == 202 and r.json()["status"] == "incomplete"
    assert (await stored(admin_db, str(mid)))["content"] == "half an ans"
    replay = await resume(chat, str(cid), str(mid), token)
    assert replay.names() == ["start", "delta", "error"]
    assert replay.events[-1].data["code"] == "cancelled"


async def test_cancel_of_another_users_turn_is_404(
    chat_llm: httpx.AsyncClient, mint: Any, user: str
) -> None:
    token = mint(user)
    cid = await new_conversation(chat_llm, token)
    original = await post_message(chat_llm, cid, "hello", token)
    mid = original.first("start").data["assistant_message_id"]
    r = await chat_llm.post(
        f"/v1/conversations/{cid}/messages/{mid}/cancel", headers=bearer(mint(user + "-x"))
    )
    assert r.status_code == 404
    r = await chat_llm.post(f"/v1/conversations/{cid}/messages/{mid}/cancel", headers=bearer(token))
    assert r.status_code == 202 and r.json()["status"] == "complete"


async def test_idle_streams_get_heartbeats_and_a_retry_hint(
    start_chat: Any, llm: Any, mint: Any, user: str
) -> None:
    chat = await start_chat(
        llm_base_url=llm.base_url, llm_api_key="k", llm_timeout_s=5.0, sse_heartbeat_s=0.2
    )
    llm.configure(target="chat", mode="slow", delay_s=1.0, chunks=2)
    token = mint(user)
    cid = await new_conversation(chat, token)
    raw = b""
    async with chat.stream(
        "POST", f"/v1/conversations/{cid}/messages", json={"content": "hi"}, headers=bearer(token)
    ) as response:
        async for chunk in response.aiter_bytes():
            raw += chunk
    text = raw.decode()
    assert ": ping" in text
    first_block = text.split("\n\n")[0]
    assert "event: start" in first_block and "retry: 2000" in first_block
    assert text.rstrip().split("\n\n")[-1].startswith("event: done")


async def test_turns_metrics_count_cancels_and_resumes(
    chat_llm: httpx.AsyncClient, mint: Any, user: str
) -> None:
    token = mint(user)
    cid = await new_conversation(chat_llm, token)
    original = await post_message(chat_llm, cid, "hello", token)
    await resume(chat_llm, cid, original.first("start").data["assistant_message_id"], token)
    body = (await chat_llm.get("/metrics")).text
    assert 'glia_chat_resumes_total{source="stored"}' in body
    assert 'glia_chat_turns_total{outcome="complete"}' in body


async def test_concurrent_resumes_all_see_the_whole_turn(
    chat_llm: httpx.AsyncClient, llm: Any, mint: Any, user: str
) -> None:
    llm.configure(target="chat", mode="slow", chunk_delay_s=0.02)
    token = mint(user)
    cid = await new_conversation(chat_llm, token)
    mid, _ = await read_until_deltas(chat_llm, cid, token, 1)
    streams = await asyncio.gather(*(resume(chat_llm, cid, mid, token) for _ in range(5)))
    for stream in streams:
        assert stream.names()[0] == "start" and stream.names()[-1] == "done"
        assert stream.text() == DEFAULT_CHAT_REPLY


async def test_a_stream_ends_with_its_token_and_resumes_with_a_fresh_one(
    chat_llm: httpx.AsyncClient, llm: Any, mint: Any, user: str
) -> None:
    llm.configure(target="chat", mode="slow", chunk_delay_s=0.25)
    short = mint(user, 2)
    cid = await new_conversation(chat_llm, short)
    first = await post_message(chat_llm, cid, "a long answer, please", short)
    terminal = first.events[-1]
    assert terminal.event == "error" and terminal.data["code"] == "stream_expired"
    assert terminal.data["retryable"] is True
    # It repeats the last event's id: resuming from it loses nothing.
    assert terminal.id == first.events[-2].id
    mid = first.first("start").data["assistant_message_id"]
    rest = await resume(chat_llm, cid, mid, mint(user), terminal.id)
    assert rest.names()[-1] == "done"
    assert first.text() + rest.text() == DEFAULT_CHAT_REPLY


async def test_a_cancel_after_the_reply_ended_keeps_it_complete(
    chat_llm: httpx.AsyncClient,
    mint: Any,
    user: str,
    admin_db: asyncpg.Connection,
    monkeypatch: Any,
) -> None:
    """The model finished while the cancel arrived: the reply is saved complete, its stream
    ends with done, and the cancel answers with the state it found."""
    from glia_chat_api.turns import runner

    real_settle = runner.settle_turn
    settling = asyncio.Event()

    async def slow_settle(*args: Any, **kwargs: Any) -> bool:
        settling.set()
        await asyncio.sleep(0.5)
        return await real_settle(*args, **kwargs)

    monkeypatch.setattr(runner, "settle_turn", slow_settle)
    token = mint(user)
    cid = await new_conversation(chat_llm, token)
    turn = asyncio.create_task(post_message(chat_llm, cid, "quick one", token))
    await asyncio.wait_for(settling.wait(), 10)
    mid = await admin_db.fetchval(
        "SELECT id FROM messages WHERE conversation_id = $1 AND role = 'assistant'",
        uuid.UUID(cid),
    )
    r = await chat_llm.post(f"/v1/conversations/{cid}/messages/{mid}/cancel", headers=bearer(token))
    assert r.status_code == 202 and r.json()["status"] == "complete"
    stream = await turn
    assert stream.names()[-1] == "done"
    assert (await stored(admin_db, str(mid)))["status"] == "complete"


async def test_a_resume_that_cannot_read_the_database_ends_with_an_error(
    start_chat: Any, llm: Any, mint: Any, user: str, infra: Any, monkeypatch: Any
) -> None:
    from glia_chat_api.turns import streams
    from glia_fakes.tcp_proxy import FaultProxy

    monkeypatch.setattr(streams, "READ_BUDGET_S", 1.0)
    overrides = {"llm_base_url": llm.base_url, "llm_api_key": "k", "llm_timeout_s": 5.0}
    a = await start_chat(**overrides)
    db = urlsplit(infra.app_url)
    async with FaultProxy(db.hostname or "127.0.0.1", db.port or 5432) as proxy:
        b = await start_chat(**overrides, database_url=proxy.url_for(infra.app_url))
        llm.configure(target="chat", mode="slow", chunk_delay_s=0.2)
        token = mint(user)
        cid = await new_conversation(a, token)
        mid, _ = await read_until_deltas(a, cid, token, 1)
        events: list[Event] = []
        async with b.stream(
            "GET", f"/v1/conversations/{cid}/messages/{mid}/events", headers=bearer(token)
        ) as response:
            async for event in iter_events(response):
                events.append(event)
                if len(events) == 2:
                    await proxy.cut()
    assert events[-1].event == "error" and events[-1].data["code"] == "storage_unavailable"
    assert events[-1].data["retryable"] is True
    assert events[-1].id == events[-2].id, "it repeats the last id: a resume loses nothing"

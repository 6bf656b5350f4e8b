"""Per-user abuse limits on turns: concurrent replies and turns per minute, counted in
the database so that every replica enforces the same limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from glia_e2e.api import bearer, new_conversation
from glia_e2e.sse import iter_events, post_message

pytestmark = pytest.mark.integration


async def replicas_with_one_reply_each(
    start_chat: Any, llm: Any, *, chunk_delay_s: float
) -> tuple[Any, Any]:
    """Two chat API replicas that allow a user one streaming reply at a time, on a model
    that streams slowly enough for turns to overlap."""
    overrides = {
        "llm_base_url": llm.base_url,
        "llm_api_key": "k",
        "llm_timeout_s": 5.0,
        "turns_concurrent_per_user": 1,
    }
    a, b = await start_chat(**overrides), await start_chat(**overrides)
    llm.configure(target="chat", mode="slow", chunk_delay_s=chunk_delay_s)
    return a, b


async def test_concurrent_turns_are_limited_across_replicas(
    start_chat: Any, llm: Any, mint: Any, user: str
) -> None:
    a, b = await replicas_with_one_reply_each(start_chat, llm, chunk_delay_s=0.1)
    token = mint(user)
    cid = await new_conversation(a, token)
    async with a.stream(
        "POST", f"/v1/conversations/{cid}/messages", json={"content": "one"}, headers=bearer(token)
    ) as running:
        async for event in iter_events(running):
            if event.event == "delta":
                break
        # The first reply still streams: a second turn, on either replica, is refused.
        for replica in (a, b):
            r = await replica.post(
                f"/v1/conversations/{cid}/messages", json={"content": "two"}, headers=bearer(token)
            )
            assert r.status_code == 429
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == "rate_limited"
            assert int(r.headers["retry-after"]) >= 1
        # Another user is not held back.
        other = mint(user + "-other")
        other_stream = await post_message(b, await new_conversation(b, other), "hi", other)
        assert other_stream.names()[-1] == "done"
    # Once the first reply has ended, the user may go on.
    for _ in range(100):
        stream = await post_message(b, cid, "three", token)
        if stream.status == 200:
            break
        await asyncio.sleep(0.1)
    assert stream.names()[-1] == "done"
    metrics = (await a.get("/metrics")).text
    assert 'glia_rate_limited_total{limit="turns_concurrent"}' in metrics


async def test_turns_begun_at_once_on_two_replicas_count_each_other(
    start_chat: Any, llm: Any, mint: Any, user: str
) -> None:
    """The user's lock serializes turn starts: of 8 begun at the same moment, through two
    replicas, with one reply allowed at a time, exactly one streams."""
    a, b = await replicas_with_one_reply_each(start_chat, llm, chunk_delay_s=0.05)
    token = mint(user)
    conversations = [await new_conversation(a, token) for _ in range(8)]
    streams = await asyncio.gather(
        *(
            post_message((a, b)[i % 2], cid, f"at once {i}", token)
            for i, cid in enumerate(conversations)
        )
    )
    assert sorted(s.status for s in streams) == [200] + [429] * 7
    assert [s.names()[-1] for s in streams if s.status == 200] == ["done"]


async def test_turns_per_minute_are_limited_but_replays_are_not(
    start_chat: Any, mint: Any, user: str
) -> None:
    chat = await start_chat(turns_per_minute_per_user=2)
    token = mint(user)
    cid = await new_conversation(chat, token)
    first = await post_message(chat, cid, "one", token, idempotency_key="k1")
    assert (await post_message(chat, cid, "two", token)).names()[-1] == "done"
    r = await chat.post(
        f"/v1/conversations/{cid}/messages", json={"content": "three"}, headers=bearer(token)
    )
    assert r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 60
    # A repeated request creates nothing: it replays, whatever the limit.
    again = await post_message(chat, cid, "one", token, idempotency_key="k1")
    assert again.status == 200 and again.text() == first.text()
    detail = (await chat.get(f"/v1/conversations/{cid}", headers=bearer(token))).json()
    assert len(detail["messages"]) == 4


async def test_the_usage_count_reads_one_users_entries_by_index(admin_db: Any) -> None:
    """The count before every turn must not grow with all users' replies or with the
    user's whole history: each reply enters the index of streaming replies (and stays
    there until vacuum), and a user's turns only accumulate. Both its conditions are
    index conditions: the user for the streaming replies, the user and the window for
    the turns."""
    from glia_chat_api.turns.store import USAGE

    query = USAGE.replace("$1", "'someone'").replace("$2", "60")
    async with admin_db.transaction():
        # The tables are small here: make the planner show the index it would use.
        await admin_db.execute("SET LOCAL enable_seqscan = off")
        plan = [row[0] for row in await admin_db.fetch("EXPLAIN (COSTS OFF) " + query)]

    def conditions_of(index: str) -> str:
        at = next(i for i, line in enumerate(plan) if f" {index} " in line)
        return plan[at + 1] if "Index Cond" in plan[at + 1] else ""

    assert "user_id = 'someone'" in conditions_of("ix_messages_streaming"), plan
    turns = conditions_of("ix_turns_user_created")
    assert "user_id = 'someone'" in turns and "created_at >" in turns, plan

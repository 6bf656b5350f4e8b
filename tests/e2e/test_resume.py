"""Resumable turns, as clients rely on them: the events route replays a turn's events
with their original ids (all, or those after Last-Event-ID), follows a running turn live,
from the chat API process that runs it or from another one, and the cancel route ends a
turn early. A turn outlives the client that started it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from glia_e2e.api import bearer, new_conversation
from glia_e2e.processes import Process
from glia_e2e.sse import Event, iter_events, post_message, read_stream

pytestmark = pytest.mark.e2e

# Long enough that a client which reads a few events and hangs up finds the turn still
# running when it comes back (the chat API's LLM timeout in the e2e system is 2 s, so
# the pause between two chunks stays well under it).
SLOW_TURN = {"mode": "slow", "delay_s": 0, "chunk_delay_s": 0.4, "chunks": 30}


def events_path(cid: str, mid: str) -> str:
    return f"/v1/conversations/{cid}/messages/{mid}/events"


async def start_and_hang_up(
    chat: httpx.AsyncClient, cid: str, token: str, deltas: int = 2
) -> list[Event]:
    """Send a message, read ``start`` and a few deltas, then drop the connection."""
    seen: list[Event] = []
    async with chat.stream(
        "POST",
        f"/v1/conversations/{cid}/messages",
        json={"content": "Tell me about the launch plan."},
        headers=bearer(token),
    ) as response:
        assert response.status_code == 200
        async for event in iter_events(response):
            seen.append(event)
            if sum(e.event == "delta" for e in seen) >= deltas:
                break
    assert seen[0].event == "start" and seen[-1].event == "delta"
    return seen


async def resume(
    chat: httpx.AsyncClient,
    cid: str,
    mid: str,
    token: str,
    last_event_id: str | None = None,
    *,
    via: str = "header",
) -> Any:
    headers = bearer(token)
    params = {}
    if last_event_id is not None and via == "header":
        headers["Last-Event-ID"] = last_event_id
    elif last_event_id is not None:
        params["last_event_id"] = last_event_id
    async with chat.stream(
        "GET", events_path(cid, mid), headers=headers, params=params
    ) as response:
        return await read_stream(response)


def as_tuples(events: list[Event]) -> list[tuple[str | None, str | None, Any]]:
    return [(e.event, e.id, e.data) for e in events]


async def stored_message(chat: httpx.AsyncClient, cid: str, mid: str, token: str) -> Any:
    body = (await chat.get(f"/v1/conversations/{cid}", headers=bearer(token))).json()
    return next(m for m in body["messages"] if m["id"] == mid)


async def test_a_finished_turn_replays_with_its_original_ids(
    sys_: Any, mint: Any, user: str
) -> None:
    token = mint(user)
    async with sys_.client("chat") as chat:
        cid = await new_conversation(chat, token)
        original = await post_message(chat, cid, "Plan the launch.", token)
        assert original.names()[-1] == "done"
        mid = original.first("start").data["assistant_message_id"]

        everything = await resume(chat, cid, mid, token)
        assert everything.status == 200
        assert everything.headers["content-type"].startswith("text/event-stream")
        assert as_tuples(everything.events) == as_tuples(original.events)

        after_three = await resume(chat, cid, mid, token, "3")
        assert as_tuples(after_three.events) == as_tuples(original.events[4:])
        by_query = await resume(chat, cid, mid, token, "3", via="query")
        assert as_tuples(by_query.events) == as_tuples(original.events[4:])

        last_id = original.events[-1].id
        assert last_id is not None
        beyond = await resume(chat, cid, mid, token, str(int(last_id) + 50))
        assert as_tuples(beyond.events) == as_tuples(original.events[-1:])


@pytest.mark.parametrize("bad", ["abc", "1.5", "7x"])
async def test_a_malformed_last_event_id_is_422(sys_: Any, mint: Any, user: str, bad: str) -> None:
    token = mint(user)
    async with sys_.client("chat") as chat:
        cid = await new_conversation(chat, token)
        stream = await post_message(chat, cid, "Hello.", token)
        mid = stream.first("start").data["assistant_message_id"]
        for via in ("header", "query"):
            answer = await resume(chat, cid, mid, token, bad, via=via)
            assert answer.status == 422, (via, answer.body)
            assert answer.headers["content-type"].startswith("application/problem+json")


async def test_unknown_and_foreign_turns_are_404(sys_: Any, mint: Any, user: str) -> None:
    owner, stranger = mint(user), mint(f"{user}-other")
    async with sys_.client("chat") as chat:
        cid = await new_conversation(chat, owner)
        stream = await post_message(chat, cid, "Hello.", owner)
        start = stream.first("start").data
        mid = start["assistant_message_id"]
        other_cid = await new_conversation(chat, owner)
        cases = [
            (cid, str(uuid.uuid4()), owner),  # no such message
            (other_cid, mid, owner),  # a message of another conversation
            (cid, mid, stranger),  # another user's turn
        ]
        for c, m, token in cases:
            events = await resume(chat, c, m, token)
            assert events.status == 404, (c, m, events.body)
            cancel = await chat.post(
                f"/v1/conversations/{c}/messages/{m}/cancel", headers=bearer(token)
            )
            assert cancel.status_code == 404, cancel.text
        # Nothing of the owner's turn was disturbed.
        assert (await stored_message(chat, cid, mid, owner))["status"] == "complete"


async def test_a_client_that_drops_resumes_live_where_it_stopped(
    sys_: Any, mint: Any, user: str
) -> None:
    await sys_.llm_control.aconfigure(target="chat", **SLOW_TURN)
    token = mint(user)
    async with sys_.client("chat") as chat:
        cid = await new_conversation(chat, token)
        seen = await start_and_hang_up(chat, cid, token)
        mid = seen[0].data["assistant_message_id"]
        # The turn outlives its client.
        assert (await stored_message(chat, cid, mid, token))["status"] == "streaming"

        rest = await resume(chat, cid, mid, token, seen[-1].id)
        assert rest.status == 200
        ids = [int(e.id) for e in seen + rest.events if e.id is not None]
        assert ids == list(range(len(ids))), "every event once, in order"
        assert rest.names()[-1] == "done" and rest.names().count("done") == 1
        text = "".join(e.data["text"] for e in seen + rest.events if e.event == "delta")
        stored = await stored_message(chat, cid, mid, token)
        assert stored["status"] == "complete" and stored["content"] == text


@pytest.mark.timeout(300)  # starts one more chat API process
async def test_a_turn_resumes_from_another_chat_api_process(
    sys_: Any, mint: Any, user: str, spawn: Callable[..., Process]
) -> None:
    replica = spawn("glia-chat-api")
    await sys_.llm_control.aconfigure(target="chat", **SLOW_TURN)
    token = mint(user)
    async with (
        sys_.client("chat") as first,
        httpx.AsyncClient(base_url=replica.url, timeout=30) as second,
    ):
        cid = await new_conversation(first, token)
        seen = await start_and_hang_up(first, cid, token)
        mid = seen[0].data["assistant_message_id"]
        assert (await stored_message(second, cid, mid, token))["status"] == "streaming"

        rest = await resume(second, cid, mid, token, seen[-1].id)
        assert rest.status == 200
        ids = [int(e.id) for e in seen + rest.events if e.id is not None]
        assert ids == list(range(len(ids)))
        assert rest.names()[-1] == "done"
        text = "".join(e.data["text"] for e in seen + rest.events if e.event == "delta")
        assert (await stored_message(second, cid, mid, token))["content"] == text

        # And the whole turn from the start, on either process, is the same stream.
        whole_first = await resume(first, cid, mid, token)
        whole_second = await resume(second, cid, mid, token)
        assert as_tuples(whole_first.events) == as_tuples(whole_second.events)
        assert as_tuples(whole_first.events)[: len(seen)] == as_tuples(seen)


async def test_cancel_ends_a_running_turn_incomplete(sys_: Any, mint: Any, user: str) -> None:
    await sys_.llm_control.aconfigure(target="chat", **SLOW_TURN)
    token = mint(user)
    async with sys_.client("chat") as chat:
        cid = await new_conversation(chat, token)
        events: list[Event] = []
        async with chat.stream(
            "POST",
            f"/v1/conversations/{cid}/messages",
            json={"content": "A long answer, please."},
            headers=bearer(token),
        ) as response:
            async for event in iter_events(response):
                events.append(event)
                if event.event == "delta" and sum(e.event == "delta" for e in events) == 2:
                    mid = events[0].data["assistant_message_id"]
                    cancel = await chat.post(
                        f"/v1/conversations/{cid}/messages/{mid}/cancel", headers=bearer(token)
                    )
                    assert cancel.status_code == 202, cancel.text
        terminal = events[-1]
        assert terminal.event == "error" and terminal.data["code"] == "cancelled"
        assert [e.event for e in events].count("error") == 1
        text = "".join(e.data["text"] for e in events if e.event == "delta")
        stored = await stored_message(chat, cid, mid, token)
        assert stored["status"] == "incomplete" and stored["content"] == text
        # The model did not get to finish: fewer deltas than the reply has pieces.
        assert sum(e.event == "delta" for e in events) < SLOW_TURN["chunks"]

        replay = await resume(chat, cid, mid, token)
        assert as_tuples(replay.events) == as_tuples(events)

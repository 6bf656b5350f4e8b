"""The built-in responder: deterministic, streamed in pieces that join to the reply."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from glia_chat_api.llm import ChatTurnMessage, LocalResponder
from glia_chat_api.llm.local import local_reply, split_into_deltas


async def collect(history: list[ChatTurnMessage]) -> tuple[str, list[str], str | None]:
    parts, finish = [], None
    async for chunk in LocalResponder().stream(history):
        if chunk.text:
            parts.append(chunk.text)
        if chunk.finish_reason:
            finish = chunk.finish_reason
    return "".join(parts), parts, finish


async def test_reply_is_deterministic_and_streams_in_pieces() -> None:
    history = [ChatTurnMessage("user", "Please summarise the plan for Friday")]
    first, parts, finish = await collect(history)
    second, _, _ = await collect(list(history))
    assert first == second == local_reply(history)
    assert "summarise the plan for Friday" in first
    assert 1 < len(parts) <= 20
    assert finish == "stop"


async def test_reply_depends_on_the_conversation() -> None:
    a, _, _ = await collect([ChatTurnMessage("user", "alpha")])
    b, _, _ = await collect([ChatTurnMessage("user", "beta")])
    assert a != b


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_deltas_join_back_to_the_text(text: str) -> None:
    parts = split_into_deltas(text)
    assert "".join(parts) == text
    assert len(parts) <= 20

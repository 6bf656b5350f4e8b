"""The chat model's history is bounded by a token budget, counted with a tokenizer whose
data ships with the package (no download), and replies by max_tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from glia_chat_api.llm.base import ChatTurnMessage
from glia_chat_api.llm.budget import MESSAGE_OVERHEAD_TOKENS, HistoryBudget, count_tokens
from glia_e2e.sse import post_message


def msg(role: str, text: str) -> ChatTurnMessage:
    return ChatTurnMessage(role=role, content=text)  # type: ignore[arg-type]


def test_tokens_are_counted_by_the_tokenizer_not_by_characters() -> None:
    assert count_tokens("Hello world") == 2
    assert count_tokens("a" * 1000) < 1000 / 3
    assert count_tokens("<|endoftext|>") > 1  # special tokens in user text are just text


def test_the_tokenizer_loads_without_any_network() -> None:
    # Every download would go through this proxy, which refuses connections.
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    env.pop("TIKTOKEN_CACHE_DIR", None)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from glia_chat_api.llm.budget import count_tokens;print(count_tokens('Hello world'))",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"


def test_the_newest_messages_that_fit_are_kept_in_order() -> None:
    history = [msg("user", f"message number {i} " + "word " * 20) for i in range(10)]
    per_message = count_tokens(history[0].content) + MESSAGE_OVERHEAD_TOKENS
    kept = HistoryBudget(per_message * 3 + 1).trim(history)
    assert kept == history[-3:]
    # The message being answered goes even when it alone is over the budget.
    huge = [*history, msg("user", "big " * 5000)]
    assert HistoryBudget(100).trim(huge) == [huge[-1]]
    assert HistoryBudget(100).trim([]) == []


@pytest.mark.integration
async def test_the_model_gets_what_fits_and_a_reply_limit(
    start_chat: Any, llm: Any, mint: Any, user: str
) -> None:
    chat = await start_chat(
        llm_base_url=llm.base_url,
        llm_api_key="k",
        llm_timeout_s=5.0,
        chat_history_tokens=200,
        chat_max_tokens=77,
    )
    token = mint(user)
    cid = (
        await chat.post("/v1/conversations", json={}, headers={"Authorization": f"Bearer {token}"})
    ).json()["id"]
    long_text = "lorem ipsum dolor sit amet " * 40  # about 200 tokens on its own
    assert (await post_message(chat, cid, long_text, token)).names()[-1] == "done"
    assert (await post_message(chat, cid, "and now?", token)).names()[-1] == "done"
    body = llm.requests("chat")[-1]["body"]
    sent = [m["content"] for m in body["messages"] if m["role"] != "system"]
    # The long message no longer fits beside the reply and the new message.
    assert long_text not in sent and sent[-1] == "and now?"
    assert body["max_tokens"] == 77

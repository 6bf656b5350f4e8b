"""The built-in deterministic responder: Glia answers offline when no LLM key is set."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncGenerator

from glia_chat_api.llm.base import ChatChunk, ChatTurnMessage

_OPENERS = (
    "Noted.",
    "Understood.",
    "Got it.",
    "Thanks for the details.",
)
_WORD = re.compile(r"\S+")


def local_reply(history: list[ChatTurnMessage]) -> str:
    """A pure function of the conversation: the same history, the same reply."""
    last_user = next((m.content for m in reversed(history) if m.role == "user"), "")
    digest = hashlib.sha256(last_user.encode()).digest()
    opener = _OPENERS[digest[0] % len(_OPENERS)]
    words = _WORD.findall(last_user)
    gist = " ".join(words[:24]) + (" ..." if len(words) > 24 else "")
    turns = sum(1 for m in history if m.role == "user")
    if not gist:
        return f"{opener} (This is Glia's local responder: no LLM is configured.)"
    return (
        f"{opener} You said: \u201c{gist}\u201d. This is turn {turns} of our conversation. "
        "I am Glia's local responder, answering without an LLM; set GLIA_LLM_API_KEY "
        "to use a real model."
    )


def split_into_deltas(text: str, max_parts: int = 20) -> list[str]:
    """Cut text into at most ``max_parts`` word-aligned pieces that join back to it."""
    pieces = re.findall(r"\S+\s*|\s+", text)
    if not pieces:
        return []
    per = max(1, -(-len(pieces) // max_parts))
    return ["".join(pieces[i : i + per]) for i in range(0, len(pieces), per)]


class LocalResponder:
    provider = "local"
    model = "glia-local"

    def __init__(self, delay_s: float = 0.0) -> None:
        self._delay_s = delay_s

    async def stream(self, history: list[ChatTurnMessage]) -> AsyncGenerator[ChatChunk, None]:
        reply = local_reply(history)
        for part in split_into_deltas(reply):
            if self._delay_s:
                await asyncio.sleep(self._delay_s)
            yield ChatChunk(text=part)
        prompt = sum(len(m.content.split()) for m in history)
        completion = len(reply.split())
        yield ChatChunk(
            finish_reason="stop",
            usage={
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        )

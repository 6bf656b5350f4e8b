"""The history a chat model sees, bounded by a token budget.

Tokens are counted with tiktoken's ``cl100k_base`` encoding, whose data file ships in
this package (``tiktoken_cache/``, under the name tiktoken caches it by): tiktoken would
otherwise download it at run time. Counts are exact for OpenAI's GPT-4 family and close
enough for a budget with other models.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import tiktoken

from glia_chat_api.llm.base import ChatTurnMessage

ENCODING = "cl100k_base"
CACHE_DIR = Path(__file__).parent / "tiktoken_cache"
# What a chat message costs beyond its text (role and separators), per OpenAI's guide.
MESSAGE_OVERHEAD_TOKENS = 4


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    # tiktoken looks in this directory before it downloads anything.
    os.environ["TIKTOKEN_CACHE_DIR"] = str(CACHE_DIR)
    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


class HistoryBudget:
    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        encoding()  # loaded now, not during the first turn

    def trim(self, history: list[ChatTurnMessage]) -> list[ChatTurnMessage]:
        """The newest messages that fit the budget, in order. The last one (the message
        being answered) is always kept, whatever its size; an older message that does
        not fit ends the history there, so the model never sees a gap."""
        if not history:
            return history
        kept = [history[-1]]
        used = count_tokens(history[-1].content) + MESSAGE_OVERHEAD_TOKENS
        for message in reversed(history[:-1]):
            used += count_tokens(message.content) + MESSAGE_OVERHEAD_TOKENS
            if used > self.max_tokens:
                break
            kept.append(message)
        kept.reverse()
        return kept

"""What the fake answers when no fault strikes: predictable replies derived from the
request, so tests can assert on them."""

from __future__ import annotations

import re
from typing import Any, Final

# A message as an extraction prompt shows it: a line that starts "[<id>] <role>:".
MESSAGE_ID_RE: Final = re.compile(
    r"^\[([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\]"
    r" (?:user|assistant):",
    re.MULTILINE,
)


def message_text(message: Any) -> str:
    """Text of one chat message; content may be a string or a list of parts."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def messages_of(body: dict[str, Any]) -> list[Any]:
    messages = body.get("messages")
    return messages if isinstance(messages, list) else []


def build_cards(body: dict[str, Any]) -> dict[str, Any]:
    """The default extraction answer, derived from the request so tests can predict it.

    A ``summary`` card citing every message the prompt shows (lines that start
    ``[<id>] <role>:``; deduplicated, in order), plus a ``fact`` card citing the first
    one when there is any.
    """
    texts = [message_text(m) for m in messages_of(body)]
    ids = list(dict.fromkeys(u.lower() for t in texts for u in MESSAGE_ID_RE.findall(t)))
    user_texts = [
        message_text(m)
        for m in messages_of(body)
        if isinstance(m, dict) and m.get("role") == "user" and message_text(m)
    ]
    last = user_texts[-1] if user_texts else next((t for t in reversed(texts) if t), "")
    cards: list[dict[str, Any]] = [
        {"kind": "summary", "title": "Summary", "body": last[:200], "source_message_ids": ids}
    ]
    if ids:
        cards.append(
            {
                "kind": "fact",
                "title": "Fact",
                "body": f"A fact stated in message {ids[0]}.",
                "source_message_ids": [ids[0]],
            }
        )
    return {"cards": cards}


def split_text(text: str, parts: int) -> list[str]:
    """``parts`` non-empty pieces that concatenate to ``text`` (fewer if it is short)."""
    n = max(1, min(parts, len(text)))
    bounds = [round(i * len(text) / n) for i in range(n + 1)]
    return [text[bounds[i] : bounds[i + 1]] for i in range(n)]


def usage_of(body: dict[str, Any], content: str) -> dict[str, int]:
    """Word counts: deterministic, and close enough to tokens for accounting tests."""
    prompt = sum(len(message_text(m).split()) for m in messages_of(body))
    completion = len(content.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def error_body(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}

"""LLM-first extraction: one chat completion with a strict JSON schema, validated."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from openai import AsyncOpenAI
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glia_common.llm import classify_llm_error, llm_call_span, record_llm_outcome
from glia_extractor.extraction.types import (
    MAX_BODY_CHARS,
    MAX_CARDS,
    MAX_TITLE_CHARS,
    CardDraft,
    SourceMessage,
)

# The prompt carries the newest messages up to this many characters.
PROMPT_BUDGET_CHARS = 48_000

SYSTEM_PROMPT = (
    "You extract structured cards from a conversation between a user and an assistant. "
    "Return JSON matching the schema: a list of cards. Always include exactly one 'summary' "
    "card first. Then add 'fact', 'task', 'decision' and 'question' cards only for what the "
    "conversation actually states. Each card names the ids of the messages it comes from, "
    "using only ids that appear in the conversation. Titles are short; bodies are at most a "
    "few sentences."
)

# Strict-mode compatible (every field required, no extra keys); lengths and ids are
# checked on our side, since providers differ in which constraints they enforce.
CARDS_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["cards"],
    "properties": {
        "cards": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["kind", "title", "body", "source_message_ids"],
                "properties": {
                    "kind": {
                        "type": "string",
                        "enum": ["summary", "fact", "task", "decision", "question"],
                    },
                    "title": {"type": "string"},
                    "body": {"type": "string"},
                    "source_message_ids": {"type": "array", "items": {"type": "string"}},
                },
            },
        }
    },
}


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["summary", "fact", "task", "decision", "question"]
    title: str = Field(min_length=1, max_length=MAX_TITLE_CHARS)
    body: str = Field(max_length=MAX_BODY_CHARS)
    source_message_ids: list[uuid.UUID]


class _Cards(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cards: list[_Card] = Field(max_length=MAX_CARDS)


class ExtractionFailed(Exception):
    def __init__(self, failure_class: str, detail: str) -> None:
        super().__init__(detail)
        self.failure_class = failure_class
        self.detail = detail


@dataclass(frozen=True, slots=True)
class LlmResult:
    cards: list[CardDraft]
    latency_ms: int
    usage: dict[str, Any] | None


def build_prompt(messages: Sequence[SourceMessage], earlier_summary: str | None = None) -> str:
    """The latest messages (newest first up to the budget, then in order), after the
    summary of the earlier conversation when the messages are only its latest part."""
    lines: list[str] = []
    used = 0
    for m in reversed(messages):
        line = f"[{m.id}] {m.role}: {m.content}"
        if used + len(line) > PROMPT_BUDGET_CHARS and lines:
            break
        lines.append(line[:PROMPT_BUDGET_CHARS])
        used += len(line)
    lines.reverse()
    prompt = "Conversation (each message is prefixed with its id):\n\n" + "\n\n".join(lines)
    if earlier_summary:
        # One paragraph: the summary's own text never reads as a message line.
        summary = " ".join(earlier_summary.split())[:MAX_BODY_CHARS]
        prompt = (
            "Summary of the earlier conversation (its messages are not shown; cite only "
            f"the messages below):\n{summary}\n\n{prompt}"
        )
    return prompt


def parse_cards(content: str | None, messages: Sequence[SourceMessage]) -> list[CardDraft]:
    """Validate the model's output; anything off is a ``schema`` failure."""
    if not content:
        raise ExtractionFailed("schema", "empty response")
    try:
        parsed = _Cards.model_validate(json.loads(content))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ExtractionFailed(
            "schema", f"response does not match the schema: {exc}"[:500]
        ) from exc
    known = {m.id for m in messages}
    drafts: list[CardDraft] = []
    for card in parsed.cards:
        unknown = [i for i in card.source_message_ids if i not in known]
        if unknown:
            raise ExtractionFailed("schema", f"card cites unknown message ids: {unknown[:3]}")
        title = " ".join(card.title.replace("\x00", "").split())
        if not title:
            raise ExtractionFailed("schema", "card with an empty title")
        drafts.append(
            CardDraft(
                kind=card.kind,
                title=title,
                body=card.body.replace("\x00", ""),
                source_message_ids=tuple(dict.fromkeys(card.source_message_ids)),
            )
        )
    return drafts


class LlmExtractor:
    def __init__(self, client: AsyncOpenAI, model: str, provider: str) -> None:
        self._client = client
        self.model = model
        self.provider = provider

    async def extract(
        self, messages: Sequence[SourceMessage], earlier_summary: str | None = None
    ) -> LlmResult:
        started = time.perf_counter()
        with llm_call_span(
            self.model, self.provider, **{"glia.extraction.messages": len(messages)}
        ) as span:
            try:
                response = await self._client.chat.completions.create(
                    model=self.model,
                    messages=[
                        {"role": "system", "content": SYSTEM_PROMPT},
                        {"role": "user", "content": build_prompt(messages, earlier_summary)},
                    ],
                    response_format={
                        "type": "json_schema",
                        "json_schema": {
                            "name": "cards",
                            "strict": True,
                            "schema": CARDS_JSON_SCHEMA,
                        },
                    },
                )
                if not response.choices:
                    raise ExtractionFailed("schema", "response without choices")
                cards = parse_cards(response.choices[0].message.content, messages)
            except ExtractionFailed as exc:
                record_llm_outcome(span, exc.failure_class)
                raise
            except Exception as exc:
                failure_class = classify_llm_error(exc)
                record_llm_outcome(span, failure_class)
                raise ExtractionFailed(failure_class, f"{type(exc).__name__}: {exc}"[:500]) from exc
            usage = response.usage.model_dump(exclude_none=True) if response.usage else None
            span.set_attribute("glia.extraction.cards", len(cards))
            record_llm_outcome(span, None, usage)
            return LlmResult(cards, int((time.perf_counter() - started) * 1000), usage)

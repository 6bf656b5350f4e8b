"""Streaming chat completions from any OpenAI-compatible endpoint."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Literal

from openai import AsyncOpenAI

from glia_chat_api.llm.base import ChatChunk, ChatError, ChatTurnMessage
from glia_common.llm import classify_llm_error, llm_call_span, record_llm_outcome

_ERRORS = {
    "auth": ("llm_auth", "the language model rejected our credentials", False),
    "quota": ("llm_rate_limited", "the language model is rate limited; try again shortly", True),
    "timeout": ("llm_timeout", "the language model did not answer in time", True),
    "network": ("llm_unavailable", "the language model could not be reached", True),
    "schema": ("llm_bad_response", "the language model sent a malformed response", True),
    "provider_error": ("llm_error", "the language model failed", True),
}
SYSTEM_PROMPT = "You are Glia, a helpful assistant. Answer clearly and concisely."


def chat_error(exc: BaseException) -> ChatError:
    failure_class = classify_llm_error(exc)
    code, message, retryable = _ERRORS[failure_class]
    return ChatError(code, message, retryable=retryable, failure_class=failure_class)


class OpenAIChat:
    def __init__(self, client: AsyncOpenAI, model: str, provider: str, max_tokens: int) -> None:
        self._client = client
        self.model = model
        self.provider = provider
        self._max_tokens = max_tokens

    async def stream(self, history: list[ChatTurnMessage]) -> AsyncGenerator[ChatChunk, None]:
        messages: list[Any] = [{"role": "system", "content": SYSTEM_PROMPT}]
        messages += [{"role": m.role, "content": m.content} for m in history]
        with llm_call_span(self.model, self.provider) as span:
            finish: str | None = None
            usage: dict[str, Any] | None = None
            try:
                stream = await self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    stream=True,
                    stream_options={"include_usage": True},
                    max_tokens=self._max_tokens,
                )
                async with stream:
                    async for chunk in stream:
                        if chunk.usage is not None:
                            usage = chunk.usage.model_dump(exclude_none=True)
                        for choice in chunk.choices:
                            if choice.delta and choice.delta.content:
                                yield ChatChunk(text=choice.delta.content)
                            if choice.finish_reason:
                                finish = choice.finish_reason
            except ChatError:
                raise
            except Exception as exc:
                error = chat_error(exc)
                record_llm_outcome(span, error.failure_class)
                raise error from exc
            if finish is None:
                error = ChatError(
                    "llm_bad_response",
                    "the language model ended its stream without finishing",
                    retryable=True,
                    failure_class="provider_error",
                )
                record_llm_outcome(span, error.failure_class)
                raise error
            reason: Literal["stop", "length"] = "length" if finish == "length" else "stop"
            span.set_attribute("gen_ai.response.finish_reasons", [finish])
            record_llm_outcome(span, None, usage)
            yield ChatChunk(finish_reason=reason, usage=usage)

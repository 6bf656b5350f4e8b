from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True, slots=True)
class ChatTurnMessage:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """Streamed output: text, and on the last chunk the finish reason and usage."""

    text: str = ""
    finish_reason: Literal["stop", "length"] | None = None
    usage: dict[str, Any] | None = None


class ChatError(Exception):
    """The model failed: ``code`` and ``message`` go to the client, the class to telemetry."""

    def __init__(self, code: str, message: str, *, retryable: bool, failure_class: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.failure_class = failure_class


class ChatModel(Protocol):
    provider: str
    model: str

    def stream(self, history: list[ChatTurnMessage]) -> AsyncGenerator[ChatChunk, None]: ...

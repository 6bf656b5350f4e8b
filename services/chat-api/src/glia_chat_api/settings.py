"""The chat API's settings: the common parts plus what only chat turns and the outbox
relay use."""

from __future__ import annotations

from pydantic import Field

from glia_common.settings import AuthSettings, LlmSettings, ServiceSettings, StreamSettings


class ChatApiSettings(ServiceSettings, AuthSettings, LlmSettings, StreamSettings):
    chat_model: str = "gpt-4o-mini"
    # How many of the latest messages the chat model sees.
    chat_history_messages: int = Field(default=40, ge=1)

    # Outbox relay.
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    outbox_batch_size: int = Field(default=100, ge=1, le=1000)
    # A turn whose stream has not checkpointed for this long is abandoned (incomplete).
    turn_stale_after_s: float = Field(default=120.0, gt=0)

    # Per-user abuse limits, shared by every replica (counted in the database).
    turns_concurrent_per_user: int = Field(default=3, ge=1)
    turns_per_minute_per_user: int = Field(default=60, ge=1)

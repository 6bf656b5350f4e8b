"""The chat API's settings: the common parts plus what only chat turns and the outbox
relay use."""

from __future__ import annotations

from pydantic import Field

from glia_common.settings import AuthSettings, LlmSettings, ServiceSettings


class ChatApiSettings(ServiceSettings, AuthSettings, LlmSettings):
    chat_model: str = "gpt-4o-mini"
    # How many of the latest messages the chat model sees.
    chat_history_messages: int = Field(default=40, ge=1)

    # Outbox relay.
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    outbox_batch_size: int = Field(default=100, ge=1, le=1000)
    # A turn whose stream has not checkpointed for this long is abandoned (incomplete).
    turn_stale_after_s: float = Field(default=120.0, gt=0)

    # Idle SSE streams get a comment this often, so proxies and ingresses keep them open.
    sse_heartbeat_s: float = Field(default=10.0, gt=0, le=300)
    # The reconnection delay EventSource clients are told (the SSE ``retry:`` field).
    sse_retry_ms: int = Field(default=2000, ge=0, le=600_000)

"""The chat API's settings: the common parts plus what only chat turns and the outbox
relay use."""

from __future__ import annotations

from pydantic import Field

from glia_common.settings import (
    AuthSettings,
    CorsSettings,
    LlmSettings,
    ServiceSettings,
    StreamSettings,
)


class ChatApiSettings(ServiceSettings, AuthSettings, LlmSettings, StreamSettings, CorsSettings):
    chat_model: str = "gpt-4o-mini"
    # The chat model sees at most this many of the latest messages, and only as many of
    # those as fit in the token budget (the message being answered always goes).
    chat_history_messages: int = Field(default=40, ge=1)
    chat_history_tokens: int = Field(default=8000, ge=100)
    # The longest reply the model may write, in tokens (finish_reason "length" past it).
    chat_max_tokens: int = Field(default=1024, ge=1)

    # Outbox relay.
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    outbox_batch_size: int = Field(default=100, ge=1, le=1000)
    # A turn whose process has not checkpointed it for this long (a live turn does every
    # 5 s, even while the model is silent) died with it: it is settled incomplete. The
    # sweeper looks this often.
    turn_stale_after_s: float = Field(default=20.0, ge=10)
    turn_sweep_interval_s: float = Field(default=5.0, gt=0)

    # Per-user abuse limits, shared by every replica (counted in the database).
    turns_concurrent_per_user: int = Field(default=3, ge=1)
    turns_per_minute_per_user: int = Field(default=60, ge=1)

    # The card query API's base URL as the web client (/app) calls it; empty: the
    # page's own origin (one ingress serves both APIs).
    web_card_query_url: str = ""

"""The body of a chat turn request."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from glia_chat_api.conversations.schemas import StoredText


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: StoredText = Field(min_length=1, max_length=32_000)

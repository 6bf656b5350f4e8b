"""Request and response bodies of the conversation routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    return value


# PostgreSQL text cannot hold NUL: refuse it at the edge with a clear 422.
StoredText = Annotated[str, AfterValidator(_no_nul)]


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: StoredText | None = Field(default=None, max_length=200)


class ConversationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str | None
    created_at: datetime
    updated_at: datetime


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    role: Literal["user", "assistant"]
    content: str
    status: Literal["complete", "streaming", "failed", "incomplete"]
    created_at: datetime


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]
    # Set when the conversation has more messages than this page holds: pass it as
    # ``cursor`` for the next ones.
    next_cursor: str | None = None


class ConversationPage(BaseModel):
    items: list[ConversationOut]
    next_cursor: str | None

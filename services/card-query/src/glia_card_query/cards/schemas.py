from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

CardKindName = Literal["summary", "fact", "task", "decision", "question"]


class CardOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    conversation_id: uuid.UUID
    kind: CardKindName
    title: str
    body: str
    source_message_ids: list[uuid.UUID]
    origin: Literal["llm", "fallback"]
    created_at: datetime


class FreshnessOut(BaseModel):
    state: Literal["current", "pending", "none"]
    source_hash: str | None
    derived_at: datetime | None


class CardPage(BaseModel):
    items: list[CardOut]
    next_cursor: str | None
    extraction: FreshnessOut | None

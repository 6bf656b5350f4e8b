from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

EXTRACTION_ROUTING_KEY = "extraction.requested"


class ExtractionRequested(BaseModel):
    """Body of a message on ``glia.extraction``; ``traceparent`` travels in the headers."""

    model_config = ConfigDict(extra="ignore")

    conversation_id: uuid.UUID
    user_id: str = Field(min_length=1, max_length=128)
    request_id: str = Field(min_length=1, max_length=200)
    requested_at: datetime

    @classmethod
    def now(cls, conversation_id: uuid.UUID, user_id: str, request_id: str) -> ExtractionRequested:
        """A request made at this moment (turn end, reconciler, operator)."""
        return cls(
            conversation_id=conversation_id,
            user_id=user_id,
            request_id=request_id,
            requested_at=datetime.now(UTC),
        )

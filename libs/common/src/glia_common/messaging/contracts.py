"""The contracts between services: the extraction request on the queue (chat API ->
extractor) and the card-change notification in PostgreSQL (extractor -> card query)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

EXTRACTION_ROUTING_KEY = "extraction.requested"

# NOTIFY channel, sent in the transaction that replaces a conversation's cards
# (payload: card_change_payload).
CARDS_CHANNEL = "glia_cards"


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


def card_change_payload(conversation_id: uuid.UUID) -> str:
    """The NOTIFY payload for a replaced card set: the conversation id alone. Any role
    that can connect may LISTEN, so it names no user; card query delivers it only to
    subscriptions whose owner was checked when they began."""
    return str(conversation_id)


def parse_card_change(payload: str) -> uuid.UUID | None:
    """The conversation of a card-change payload; None when malformed."""
    try:
        return uuid.UUID(payload)
    except ValueError:
        return None

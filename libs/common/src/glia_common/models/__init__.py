"""Every table of the system of record. This package owns the schema."""

from glia_common.models.base import Base
from glia_common.models.cards import Card, ExtractionState
from glia_common.models.conversations import Conversation, Message, Turn
from glia_common.models.outbox import OutboxMessage
from glia_common.models.runs import ExtractionRun

__all__ = [
    "Base",
    "Card",
    "Conversation",
    "ExtractionRun",
    "ExtractionState",
    "Message",
    "OutboxMessage",
    "Turn",
]

# Tables holding user rows: each has a user_id column and forced row-level security.
USER_TABLES = (
    "conversations",
    "messages",
    "turns",
    "cards",
    "extraction_state",
    "extraction_runs",
    "outbox",
)

"""Query classes built from a session. They never commit: the caller owns the transaction."""

from glia_common.repositories.cards import NewCard
from glia_common.repositories.conversations import ConversationRepository, Page
from glia_common.repositories.messages import MessageRepository
from glia_common.repositories.outbox import OutboxRepository
from glia_common.repositories.runs import RunRepository
from glia_common.repositories.turns import TurnRepository

__all__ = [
    "ConversationRepository",
    "MessageRepository",
    "NewCard",
    "OutboxRepository",
    "Page",
    "RunRepository",
    "TurnRepository",
]

"""What a card set is made of, and the channel that announces a new one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

# NOTIFY channel: 'user_id\nconversation_id' when a conversation's cards are replaced.
CARDS_CHANNEL = "glia_cards"


@dataclass(frozen=True, slots=True)
class NewCard:
    kind: str
    title: str
    body: str
    origin: str
    source_message_ids: Sequence[uuid.UUID]

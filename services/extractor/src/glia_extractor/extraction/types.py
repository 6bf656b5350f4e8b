"""The values extraction works on, whichever path produced them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

CardKind = Literal["summary", "fact", "task", "decision", "question"]
CARD_KINDS: tuple[CardKind, ...] = ("summary", "fact", "task", "decision", "question")

MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 2000
MAX_CARDS = 50


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """A complete message of the conversation, in conversation order."""

    id: uuid.UUID
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class CardDraft:
    """A card before it is stored: title <= MAX_TITLE_CHARS, body <= MAX_BODY_CHARS,
    source ids drawn from the messages it was extracted from."""

    kind: CardKind
    title: str
    body: str
    source_message_ids: tuple[uuid.UUID, ...]

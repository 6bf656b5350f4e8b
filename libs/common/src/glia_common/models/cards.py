from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, Text, func
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from glia_common.models.base import Base, created_at_column, user_id_column, uuid_pk

CARD_KINDS = ("summary", "fact", "task", "decision", "question")
CARD_ORIGINS = ("llm", "fallback")


class Card(Base):
    __tablename__ = "cards"

    id: Mapped[uuid.UUID] = uuid_pk()
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = user_id_column()
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    title: Mapped[str] = mapped_column(Text, nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    origin: Mapped[str] = mapped_column(Text, nullable=False)
    source_message_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(UUID(as_uuid=True)), nullable=False, server_default="{}"
    )
    source_hash: Mapped[str] = mapped_column(Text, nullable=False)
    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    # Order of the card within its set (the summary first).
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = created_at_column()

    __table_args__ = (
        CheckConstraint("kind IN ('summary', 'fact', 'task', 'decision', 'question')", name="kind"),
        CheckConstraint("origin IN ('llm', 'fallback')", name="origin"),
        Index("ix_cards_conversation_position", "conversation_id", "position"),
        Index("ix_cards_user_created", "user_id", "created_at", "id"),
    )


class ExtractionState(Base):
    """The derived set a conversation's cards currently come from (one row per conversation)."""

    __tablename__ = "extraction_state"

    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        primary_key=True,
    )
    user_id: Mapped[str] = user_id_column()
    source_hash: Mapped[str] = mapped_column(Text, nullable=False)
    # Number of complete messages the set was derived from: larger is newer.
    source_message_count: Mapped[int] = mapped_column(Integer, nullable=False)
    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    derived_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, Unmapped, mapped_column, unmapped_column

from glia_common.models.base import Base, created_at_column, user_id_column, uuid_pk

MESSAGE_ROLES = ("user", "assistant")
MESSAGE_STATUSES = ("complete", "streaming", "failed", "incomplete")


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[str] = user_id_column()
    title: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # Counters kept in the transactions that change messages: freshness is read from
    # them without scanning messages. Complete messages are never removed, so the set
    # of complete messages only grows and its size identifies it.
    message_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    complete_message_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # When the reconciler last re-requested extraction (it waits before asking again).
    # In the table but not in the mapper: only SQL functions use it, so ORM code keeps
    # working against the schema before it existed (expand/contract).
    extraction_requested_at: Unmapped[datetime | None] = unmapped_column(
        DateTime(timezone=True), nullable=True
    )

    __table_args__ = (
        CheckConstraint("char_length(title) <= 200", name="title_length"),
        Index("ix_conversations_user_recent", "user_id", text("updated_at DESC"), text("id DESC")),
    )


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[uuid.UUID] = uuid_pk()
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = user_id_column()
    # Global insertion order; messages of one turn share a transaction timestamp.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), nullable=False, unique=True)
    role: Mapped[str] = mapped_column(Text, nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    status: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint("role IN ('user', 'assistant')", name="role"),
        CheckConstraint(
            "status IN ('complete', 'streaming', 'failed', 'incomplete')", name="status"
        ),
        Index("ix_messages_conversation_seq", "conversation_id", "seq"),
        # A user's replies still streaming (the per-user limit counts them before every
        # turn), and the stale ones across users (the sweeper scans the whole, small,
        # index). Keyed by user: every reply enters it streaming, so until vacuum it also
        # holds every finished one, and a count by time alone visits them all.
        Index(
            "ix_messages_streaming",
            "user_id",
            "updated_at",
            postgresql_where=text("status = 'streaming'"),
        ),
    )


class Turn(Base):
    """One request/response exchange: what an Idempotency-Key replays."""

    __tablename__ = "turns"

    id: Mapped[uuid.UUID] = uuid_pk()
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = user_id_column()
    user_message_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False
    )
    assistant_message_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False
    )
    idempotency_key: Mapped[str | None] = mapped_column(Text)
    request_hash: Mapped[str] = mapped_column(Text, nullable=False)
    request_id: Mapped[str] = mapped_column(Text, nullable=False)
    trace_id: Mapped[str] = mapped_column(Text, nullable=False)
    finish_reason: Mapped[str | None] = mapped_column(Text)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_code: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    error_retryable: Mapped[bool | None] = mapped_column(Boolean)
    # Where each streamed delta ends in the assistant message's text (in characters):
    # with the text, they rebuild the stream's events for a resuming client.
    delta_ends: Mapped[list[int]] = mapped_column(
        ARRAY(Integer), nullable=False, server_default="{}"
    )
    created_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index(
            "uq_turns_user_idempotency_key",
            "user_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        Index("ix_turns_assistant_message_id", "assistant_message_id"),
        Index("ix_turns_conversation_id", "conversation_id"),
        # A user's turns of the last minute (the per-user rate limit).
        Index("ix_turns_user_created", "user_id", "created_at"),
    )

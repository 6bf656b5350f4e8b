from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from glia_common.models.base import Base, created_at_column, user_id_column, uuid_pk

FAILURE_CLASSES = (
    "auth",
    "quota",
    "timeout",
    "network",
    "schema",
    "provider_error",
    "not_configured",
)


class ExtractionRun(Base):
    __tablename__ = "extraction_runs"

    id: Mapped[uuid.UUID] = uuid_pk()
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = user_id_column()
    status: Mapped[str] = mapped_column(Text, nullable=False)
    source_hash: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    fallback_used: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    failure_class: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    request_id: Mapped[str | None] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(Text)
    # An operator replay may legitimately repeat a succeeded (conversation, source).
    replay: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    started_at: Mapped[datetime] = created_at_column()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    card_count: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint("status IN ('running', 'succeeded', 'failed')", name="status"),
        CheckConstraint(
            "failure_class IS NULL OR failure_class IN "
            "('auth', 'quota', 'timeout', 'network', 'schema', 'provider_error', 'not_configured')",
            name="failure_class",
        ),
        Index("ix_extraction_runs_conversation_started", "conversation_id", "started_at"),
        Index("ix_extraction_runs_trace_id", "trace_id"),
        Index("ix_extraction_runs_request_id", "request_id"),
        # At most one succeeded run per source, outside operator replays.
        Index(
            "uq_extraction_runs_succeeded_source",
            "conversation_id",
            "source_hash",
            unique=True,
            postgresql_where=text("status = 'succeeded' AND NOT replay"),
        ),
    )

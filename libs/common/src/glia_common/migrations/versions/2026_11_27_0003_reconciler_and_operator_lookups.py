"""reconciler and operator lookups

Cross-user reads the extractor's reconciler and glia-admin need, as narrow
SECURITY DEFINER functions (the app role has no other way to see other users' rows).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "conversations",
        sa.Column("extraction_requested_at", sa.DateTime(timezone=True), nullable=True),
    )
    # Conversations whose cards are not current, quiet for `grace`, with no turn streaming,
    # no request waiting in the outbox and no recent run: their request seems lost.
    op.execute("""
        CREATE FUNCTION glia_claim_stale_conversations(grace interval, max_rows integer)
        RETURNS TABLE (conversation_id uuid, user_id text)
        LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
            WITH stale AS (
                SELECT c.id, c.user_id FROM conversations c
                LEFT JOIN extraction_state s ON s.conversation_id = c.id
                WHERE c.complete_message_count > coalesce(s.source_message_count, 0)
                  AND c.updated_at < now() - grace
                  AND coalesce(c.extraction_requested_at, '-infinity') < now() - 4 * grace
                  AND NOT EXISTS (SELECT 1 FROM messages m
                                  WHERE m.conversation_id = c.id AND m.status = 'streaming')
                  AND NOT EXISTS (SELECT 1 FROM outbox o
                                  WHERE o.conversation_id = c.id AND o.sent_at IS NULL)
                  AND NOT EXISTS (SELECT 1 FROM extraction_runs r
                                  WHERE r.conversation_id = c.id AND r.started_at > now() - grace)
                ORDER BY c.updated_at
                LIMIT max_rows
                FOR UPDATE OF c SKIP LOCKED
            )
            UPDATE conversations c SET extraction_requested_at = now()
              FROM stale WHERE c.id = stale.id
            RETURNING c.id, c.user_id
        $$
    """)
    op.execute("""
        CREATE FUNCTION glia_conversation_owner(conversation uuid) RETURNS text
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT user_id FROM conversations WHERE id = conversation
        $$
    """)
    op.execute("""
        CREATE FUNCTION glia_conversations_of_runs(by_request_id text, by_trace_id text)
        RETURNS TABLE (conversation_id uuid, user_id text)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT DISTINCT conversation_id, user_id FROM extraction_runs
             WHERE (by_request_id IS NOT NULL AND request_id = by_request_id)
                OR (by_trace_id IS NOT NULL AND trace_id = by_trace_id)
        $$
    """)
    op.execute("""
        CREATE FUNCTION glia_conversations_for_reextract(by_user text)
        RETURNS TABLE (conversation_id uuid, user_id text)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT id, user_id FROM conversations
             WHERE (by_user IS NULL OR user_id = by_user) AND complete_message_count > 0
             ORDER BY updated_at
        $$
    """)


def downgrade() -> None:
    op.execute("DROP FUNCTION glia_conversations_for_reextract(text)")
    op.execute("DROP FUNCTION glia_conversations_of_runs(text, text)")
    op.execute("DROP FUNCTION glia_conversation_owner(uuid)")
    op.execute("DROP FUNCTION glia_claim_stale_conversations(interval, integer)")
    op.drop_column("conversations", "extraction_requested_at")

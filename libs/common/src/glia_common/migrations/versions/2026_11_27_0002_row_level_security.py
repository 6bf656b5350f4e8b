"""row-level security, message counters and the narrow cross-user functions

Every user table gets forced row-level security keyed on the transaction setting
glia.user_id. The owner (the migrating role) keeps access through its own policy,
so the SECURITY DEFINER functions below - the only cross-user paths - work even when
the owner is not a superuser.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 07:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USER_TABLES = (
    "conversations",
    "messages",
    "turns",
    "cards",
    "extraction_state",
    "extraction_runs",
    "outbox",
)


def upgrade() -> None:
    for table in USER_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY user_isolation ON {table} "
            "USING (user_id = current_setting('glia.user_id', true)) "
            "WITH CHECK (user_id = current_setting('glia.user_id', true))"
        )
        op.execute(
            "DO $$ BEGIN EXECUTE format("
            f"'CREATE POLICY owner_access ON {table} USING (current_user = %L) "
            "WITH CHECK (current_user = %L)', current_user, current_user); END $$"
        )

    # Counters on conversations follow the messages in the same transaction, so a
    # reader can tell freshness without scanning messages.
    op.execute("""
        CREATE FUNCTION glia_count_messages() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                UPDATE conversations
                   SET message_count = message_count + 1,
                       complete_message_count = complete_message_count
                           + (NEW.status = 'complete')::int
                 WHERE id = NEW.conversation_id;
            ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
                UPDATE conversations
                   SET complete_message_count = complete_message_count
                           + (NEW.status = 'complete')::int - (OLD.status = 'complete')::int
                 WHERE id = NEW.conversation_id;
            END IF;
            RETURN NULL;
        END $$
    """)
    op.execute("""
        CREATE TRIGGER messages_count AFTER INSERT OR UPDATE OF status ON messages
        FOR EACH ROW EXECUTE FUNCTION glia_count_messages()
    """)

    # Outbox relay: claim unsent rows of every user. Row locks are held until the
    # caller's transaction ends, so concurrent relays never publish the same row.
    op.execute("""
        CREATE FUNCTION glia_outbox_claim(batch integer) RETURNS SETOF outbox
        LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT * FROM outbox WHERE sent_at IS NULL
            ORDER BY id LIMIT batch FOR UPDATE SKIP LOCKED
        $$
    """)
    op.execute("""
        CREATE FUNCTION glia_outbox_mark_sent(ids bigint[]) RETURNS void
        LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
            UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL
            WHERE id = ANY(ids)
        $$
    """)
    op.execute("""
        CREATE FUNCTION glia_outbox_mark_failed(ids bigint[], error text) RETURNS void
        LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
            UPDATE outbox SET attempts = attempts + 1, last_error = left(error, 500)
            WHERE id = ANY(ids) AND sent_at IS NULL
        $$
    """)
    op.execute("""
        CREATE FUNCTION glia_outbox_purge(older_than interval) RETURNS bigint
        LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
            WITH gone AS (
                DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < now() - older_than
                RETURNING 1
            ) SELECT count(*) FROM gone
        $$
    """)
    op.execute("""
        CREATE FUNCTION glia_outbox_stats(OUT backlog bigint, OUT oldest_age_s double precision)
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)
            FROM outbox WHERE sent_at IS NULL
        $$
    """)

    # Turns whose stream stopped checkpointing (the process died) become incomplete
    # and request extraction, as a disconnect would have.
    op.execute("""
        CREATE FUNCTION glia_abandon_stale_turns(stale_after interval, routing_key text)
        RETURNS integer
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
        DECLARE
            n integer := 0;
            t record;
        BEGIN
            FOR t IN
                SELECT m.id AS message_id, m.conversation_id, m.user_id, tr.request_id
                  FROM messages m LEFT JOIN turns tr ON tr.assistant_message_id = m.id
                 WHERE m.status = 'streaming' AND m.updated_at < now() - stale_after
                 FOR UPDATE OF m SKIP LOCKED
            LOOP
                UPDATE messages SET status = 'incomplete', updated_at = now()
                 WHERE id = t.message_id;
                UPDATE turns SET finished_at = now(), error_code = 'incomplete',
                       error_message = 'the stream was interrupted', error_retryable = true
                 WHERE assistant_message_id = t.message_id;
                UPDATE conversations SET updated_at = now() WHERE id = t.conversation_id;
                INSERT INTO outbox (user_id, conversation_id, routing_key, payload)
                VALUES (t.user_id, t.conversation_id, routing_key, jsonb_build_object(
                    'conversation_id', t.conversation_id,
                    'user_id', t.user_id,
                    'request_id', coalesce(t.request_id, 'sweeper'),
                    'requested_at', now()));
                n := n + 1;
            END LOOP;
            RETURN n;
        END $$
    """)


def downgrade() -> None:
    for fn in (
        "glia_abandon_stale_turns(interval, text)",
        "glia_outbox_stats()",
        "glia_outbox_purge(interval)",
        "glia_outbox_mark_failed(bigint[], text)",
        "glia_outbox_mark_sent(bigint[])",
        "glia_outbox_claim(integer)",
    ):
        op.execute(f"DROP FUNCTION {fn}")
    op.execute("DROP TRIGGER messages_count ON messages")
    op.execute("DROP FUNCTION glia_count_messages()")
    for table in USER_TABLES:
        op.execute(f"DROP POLICY owner_access ON {table}")
        op.execute(f"DROP POLICY user_isolation ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")

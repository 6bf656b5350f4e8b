"""The extraction worker's reads and writes, as few round trips as the work allows.

It runs on the asyncpg connection under a SQLAlchemy pool connection (no ORM):
extraction is a hot path, and each statement here replaces several ORM ones. Every
statement runs under the user's row-level-security scope (``set_config`` first).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from glia_common.db import begin_as, begin_transaction, open_transaction
from glia_common.messaging import CARDS_CHANNEL, card_change_payload
from glia_extractor.extraction.types import CardDraft

COMPLETE_MESSAGES = """
SELECT id, role, content FROM messages
 WHERE conversation_id = $1 AND status = 'complete'
 ORDER BY seq
"""

# Close runs left 'running' by dead workers (the caller holds the conversation's lock,
# so no live run exists), and open a new run unless a succeeded one already has this
# source (an operator replay opens one anyway).
CLAIM = """
WITH abandoned AS (
    UPDATE extraction_runs
       SET status = 'failed', finished_at = clock_timestamp(),
           error = 'abandoned: the worker stopped before finishing'
     WHERE conversation_id = $1 AND status = 'running'
    RETURNING id
), prior AS (
    SELECT count(*) AS runs, coalesce(bool_or(status = 'succeeded'), false) AS done
      FROM extraction_runs WHERE conversation_id = $1 AND source_hash = $2
), opened AS (
    INSERT INTO extraction_runs (id, conversation_id, user_id, status, source_hash, provider,
                                 model, attempt, request_id, trace_id, replay)
    SELECT $3, $1, $4, 'running', $2, $5, $6, prior.runs + 1, $7, $8, $9
      FROM prior WHERE $9 OR NOT prior.done
    RETURNING id
)
SELECT (SELECT count(*) FROM abandoned) AS abandoned, (SELECT count(*) FROM opened) AS opened
"""

# The conversation still exists, and its cards do not come from a newer source.
GUARD = """
SELECT c.id IS NOT NULL AS exists, s.source_message_count AS derived_count
  FROM (SELECT $1::uuid AS id) wanted
  LEFT JOIN conversations c ON c.id = wanted.id
  LEFT JOIN extraction_state s ON s.conversation_id = wanted.id
"""

# Swap the card set, point the state at it and finish the run, in one statement: every
# part sees the snapshot from before it, so the delete never touches the new cards.
REPLACE = """
WITH gone AS (
    DELETE FROM cards WHERE conversation_id = $1
), added AS (
    INSERT INTO cards (id, conversation_id, user_id, kind, title, body, origin,
                       source_message_ids, source_hash, run_id, position)
    SELECT gen_random_uuid(), $1, $2, c.kind, c.title, c.body, $5,
           ARRAY(SELECT jsonb_array_elements_text(c.sources)::uuid), $3, $4, c.position - 1
      FROM ROWS FROM (
               jsonb_to_recordset($6::jsonb) AS (kind text, title text, body text, sources jsonb)
           ) WITH ORDINALITY AS c(kind, title, body, sources, position)
), state AS (
    INSERT INTO extraction_state (conversation_id, user_id, source_hash, source_message_count,
                                  run_id, derived_at)
    VALUES ($1, $2, $3, $7, $4, clock_timestamp())
    ON CONFLICT (conversation_id) DO UPDATE
       SET source_hash = EXCLUDED.source_hash,
           source_message_count = EXCLUDED.source_message_count,
           run_id = EXCLUDED.run_id, derived_at = EXCLUDED.derived_at
), finished AS (
    UPDATE extraction_runs
       SET status = 'succeeded', finished_at = clock_timestamp(), latency_ms = $8,
           fallback_used = $9, failure_class = $10, error = $11, card_count = $12
     WHERE id = $4
)
SELECT pg_notify($13, $14)
"""

# The conversation's current summary card, as context for a window of its latest messages.
SUMMARY = """
SELECT title || E'\n' || body FROM cards
 WHERE conversation_id = $1 AND kind = 'summary'
 ORDER BY position LIMIT 1
"""

FINISH = """
UPDATE extraction_runs
   SET status = $2, finished_at = clock_timestamp(), latency_ms = $3, fallback_used = $4,
       failure_class = $5, error = $6, card_count = $7
 WHERE id = $1
"""


@dataclass(frozen=True, slots=True)
class Claim:
    opened: bool
    abandoned: int


@dataclass(frozen=True, slots=True)
class Guard:
    exists: bool
    derived_count: int | None


class ExtractionStore:
    """Built from an asyncpg connection; the caller owns the transaction (or opens one
    with ``transaction_as``)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @asynccontextmanager
    async def transaction_as(self, user_id: str) -> AsyncIterator[None]:
        """A transaction as ``user_id``, begun and scoped in one round trip."""
        await begin_transaction(self.conn, begin_as(user_id))
        async with open_transaction(self.conn):
            yield

    async def complete_messages(self, conversation_id: uuid.UUID) -> list[asyncpg.Record]:
        return list(await self.conn.fetch(COMPLETE_MESSAGES, conversation_id))

    async def summary(self, conversation_id: uuid.UUID) -> str | None:
        text: str | None = await self.conn.fetchval(SUMMARY, conversation_id)
        return text

    async def claim(
        self,
        *,
        conversation_id: uuid.UUID,
        source_hash: str,
        run_id: uuid.UUID,
        user_id: str,
        provider: str,
        model: str,
        request_id: str,
        trace_id: str | None,
        replay: bool,
    ) -> Claim:
        row = await self.conn.fetchrow(
            CLAIM,
            conversation_id,
            source_hash,
            run_id,
            user_id,
            provider,
            model,
            request_id,
            trace_id,
            replay,
        )
        assert row is not None
        return Claim(opened=bool(row["opened"]), abandoned=int(row["abandoned"]))

    async def guard(self, conversation_id: uuid.UUID) -> Guard:
        row = await self.conn.fetchrow(GUARD, conversation_id)
        assert row is not None
        return Guard(exists=bool(row["exists"]), derived_count=row["derived_count"])

    async def replace(
        self,
        *,
        conversation_id: uuid.UUID,
        user_id: str,
        source_hash: str,
        run_id: uuid.UUID,
        origin: str,
        cards: Sequence[CardDraft],
        source_message_count: int,
        run: dict[str, Any],
    ) -> None:
        payload = json.dumps(
            [
                {
                    "kind": c.kind,
                    "title": c.title,
                    "body": c.body,
                    "sources": [str(s) for s in c.source_message_ids],
                }
                for c in cards
            ]
        )
        await self.conn.execute(
            REPLACE,
            conversation_id,
            user_id,
            source_hash,
            run_id,
            origin,
            payload,
            source_message_count,
            run["latency_ms"],
            run["fallback_used"],
            run["failure_class"],
            run["error"],
            len(cards),
            CARDS_CHANNEL,
            card_change_payload(conversation_id),
        )

    async def finish(
        self,
        run_id: uuid.UUID,
        *,
        status: str,
        latency_ms: int | None = None,
        fallback_used: bool = False,
        failure_class: str | None = None,
        error: str | None = None,
        card_count: int | None = None,
    ) -> None:
        await self.conn.execute(
            FINISH, run_id, status, latency_ms, fallback_used, failure_class, error, card_count
        )

"""The read side of cards, on the asyncpg connection: card query's hot path.

Keyset pages stay consistent while sets are replaced: a conversation's cursor names the
card set it was issued for. The caller opens the read-only transaction and sets the
user's scope (``read_transaction``), so row-level security applies to every query.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from glia_common.db.scope import user_connection
from glia_common.repositories.conversations import Page
from glia_common.repositories.cursor import InvalidCursor, decode_cursor, encode_cursor

GET_CARD = """
SELECT id, conversation_id, kind, title, body, source_message_ids, origin, created_at
  FROM cards WHERE id = $1
"""

CONVERSATION_PAGE = """
SELECT id, conversation_id, kind, title, body, source_message_ids, origin, created_at,
       position, run_id
  FROM cards
 WHERE conversation_id = $1 AND position > $2 AND ($3::text IS NULL OR kind = $3)
 ORDER BY position LIMIT $4
"""

USER_PAGE = """
SELECT id, conversation_id, kind, title, body, source_message_ids, origin, created_at, position
  FROM cards
 WHERE ($1::text IS NULL OR kind = $1)
   AND ($2::timestamptz IS NULL OR created_at < $2
        OR (created_at = $2 AND (conversation_id, position) > ($3, $4)))
 ORDER BY created_at DESC, conversation_id, position LIMIT $5
"""

FRESHNESS = """
SELECT c.message_count, c.complete_message_count, s.source_hash, s.source_message_count,
       s.derived_at, s.run_id
  FROM conversations c LEFT JOIN extraction_state s ON s.conversation_id = c.id
 WHERE c.id = $1
"""


class StaleCursor(Exception):
    """The conversation's card set was replaced since the cursor was issued."""


@dataclass(frozen=True, slots=True)
class Freshness:
    state: Literal["current", "pending", "none"]
    source_hash: str | None
    derived_at: datetime | None
    run_id: uuid.UUID | None  # the card set the conversation's cards come from


@asynccontextmanager
async def read_transaction(
    database: AsyncEngine | asyncpg.Pool, user_id: str
) -> AsyncIterator[CardReads]:
    """A read-only transaction as ``user_id`` on a pooled driver connection."""
    async with user_connection(database, user_id, read_only=True) as conn:
        yield CardReads(conn)


class CardReads:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def freshness(self, conversation_id: uuid.UUID) -> Freshness | None:
        """None when the conversation is not visible; else its extraction freshness.

        Complete messages are never removed, so the set only grows and its size names it:
        the cards are current when they were derived from that many complete messages."""
        row = await self.conn.fetchrow(FRESHNESS, conversation_id)
        if row is None:
            return None
        messages, complete, source_hash, derived_count, derived_at, run_id = row
        if messages == 0:
            return Freshness("none", None, None, run_id)
        if source_hash is None or derived_count < complete:
            return Freshness("pending", source_hash, derived_at, run_id)
        return Freshness("current", source_hash, derived_at, run_id)

    async def get(self, card_id: uuid.UUID) -> dict[str, Any] | None:
        row = await self.conn.fetchrow(GET_CARD, card_id)
        return dict(row) if row is not None else None

    async def page_for_conversation(
        self,
        conversation_id: uuid.UUID,
        run_id: uuid.UUID | None,
        kind: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page[dict[str, Any]]:
        """Cards of the set ``run_id`` (the current one) in position order."""
        after = -1
        if cursor:
            key = decode_cursor(cursor, ("r", "p"))
            if not isinstance(key["p"], int):
                raise InvalidCursor("malformed cursor")
            if run_id is None or key["r"] != str(run_id):
                raise StaleCursor
            after = key["p"]
        rows = await self.conn.fetch(
            CONVERSATION_PAGE,
            conversation_id,
            after,
            kind,
            limit + 1,
        )
        items = [dict(r) for r in rows]
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            next_cursor = encode_cursor({"r": str(items[-1]["run_id"]), "p": items[-1]["position"]})
        return Page(items, next_cursor)

    async def page_for_user(
        self, kind: str | None, limit: int, cursor: str | None
    ) -> Page[dict[str, Any]]:
        """All the caller's cards: newest sets first, then by conversation and position."""
        created: datetime | None = None
        conversation: uuid.UUID | None = None
        position = -1
        if cursor:
            key = decode_cursor(cursor, ("c", "v", "p"))
            try:
                created = datetime.fromisoformat(key["c"])
                conversation = uuid.UUID(key["v"])
                position = int(key["p"])
            except (TypeError, ValueError) as exc:
                raise InvalidCursor("malformed cursor") from exc
        rows = await self.conn.fetch(
            USER_PAGE,
            kind,
            created,
            conversation,
            position,
            limit + 1,
        )
        items = [dict(r) for r in rows]
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            last = items[-1]
            next_cursor = encode_cursor(
                {
                    "c": last["created_at"].isoformat(),
                    "v": str(last["conversation_id"]),
                    "p": last["position"],
                }
            )
        return Page(items, next_cursor)

"""The read side of cards, on a plain asyncpg pool (no ORM): card query's hot path.

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

from glia_common.db import user_connection
from glia_common.db.paging import (
    INT4_MAX,
    Page,
    decode_cursor,
    int_field,
    keyset_page,
    timestamp_field,
    uuid_field,
)

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

# The freshness and the first rows of the page in one round trip, for a read that will
# not be answered 304: one row per card (FRESHNESS's columns, then CONVERSATION_PAGE's),
# a single row with no card (id NULL) when there is none, no row when the conversation is
# not visible. Both take the conversation as $1; composed of the two constants above.
FRESHNESS_AND_PAGE = f"""
SELECT f.*, p.* FROM ({FRESHNESS}) f LEFT JOIN LATERAL ({CONVERSATION_PAGE}) p ON true
 ORDER BY p.position
"""  # noqa: S608
_FRESHNESS_COLUMNS = 6


class StaleCursor(Exception):
    """The conversation's card set was replaced since the cursor was issued."""


@dataclass(frozen=True, slots=True)
class Freshness:
    state: Literal["current", "pending", "none"]
    source_hash: str | None
    derived_at: datetime | None
    run_id: uuid.UUID | None  # the card set the conversation's cards come from


@asynccontextmanager
async def read_transaction(database: asyncpg.Pool, user_id: str) -> AsyncIterator[CardReads]:
    """A read-only transaction as ``user_id`` on a pooled driver connection."""
    async with user_connection(database, user_id, read_only=True) as conn:
        yield CardReads(conn)


class CardReads:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def freshness(self, conversation_id: uuid.UUID) -> Freshness | None:
        """None when the conversation is not visible; else its extraction freshness."""
        row = await self.conn.fetchrow(FRESHNESS, conversation_id)
        return None if row is None else _freshness(*row)

    async def freshness_and_page(
        self, conversation_id: uuid.UUID, kind: str | None, limit: int, cursor: str | None
    ) -> tuple[Freshness, Page[dict[str, Any]]] | None:
        """``freshness`` and ``page_for_conversation`` in one round trip; None when the
        conversation is not visible."""
        after, run = _conversation_cursor(cursor)
        rows = await self.conn.fetch(FRESHNESS_AND_PAGE, conversation_id, after, kind, limit + 1)
        if not rows:
            return None
        fresh = _freshness(*rows[0][:_FRESHNESS_COLUMNS])
        if run is not None and run != fresh.run_id:
            raise StaleCursor
        columns = list(rows[0].keys())[_FRESHNESS_COLUMNS:]
        cards = [
            dict(zip(columns, r[_FRESHNESS_COLUMNS:], strict=True))
            for r in rows
            if r["id"] is not None
        ]
        return fresh, _conversation_page(cards, limit)

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
        after, run = _conversation_cursor(cursor)
        if run is not None and run != run_id:
            raise StaleCursor
        rows = await self.conn.fetch(CONVERSATION_PAGE, conversation_id, after, kind, limit + 1)
        return _conversation_page([dict(r) for r in rows], limit)

    async def page_for_user(
        self, kind: str | None, limit: int, cursor: str | None
    ) -> Page[dict[str, Any]]:
        """All the caller's cards: newest sets first, then by conversation and position."""
        created: datetime | None = None
        conversation: uuid.UUID | None = None
        position = -1
        if cursor:
            key = decode_cursor(
                cursor, {"c": timestamp_field, "v": uuid_field, "p": int_field(INT4_MAX)}
            )
            created, conversation, position = key["c"], key["v"], key["p"]
        rows = await self.conn.fetch(USER_PAGE, kind, created, conversation, position, limit + 1)
        return keyset_page(
            [dict(r) for r in rows],
            limit,
            lambda c: {
                "c": c["created_at"].isoformat(),
                "v": str(c["conversation_id"]),
                "p": c["position"],
            },
        )


def _freshness(
    messages: int,
    complete: int,
    source_hash: str | None,
    derived_count: int | None,
    derived_at: datetime | None,
    run_id: uuid.UUID | None,
) -> Freshness:
    """A conversation's extraction freshness from its FRESHNESS row. Complete messages
    are never removed, so the set only grows and its size names it: the cards are current
    when they were derived from that many complete messages."""
    if messages == 0:
        return Freshness("none", None, None, run_id)
    if source_hash is None or derived_count is None or derived_count < complete:
        return Freshness("pending", source_hash, derived_at, run_id)
    return Freshness("current", source_hash, derived_at, run_id)


def _conversation_cursor(cursor: str | None) -> tuple[int, uuid.UUID | None]:
    """(the position the page starts after, the card set the cursor was issued for)."""
    if not cursor:
        return -1, None
    key = decode_cursor(cursor, {"r": uuid_field, "p": int_field(INT4_MAX)})
    return key["p"], key["r"]


def _conversation_page(cards: list[dict[str, Any]], limit: int) -> Page[dict[str, Any]]:
    return keyset_page(cards, limit, lambda c: {"r": str(c["run_id"]), "p": c["position"]})

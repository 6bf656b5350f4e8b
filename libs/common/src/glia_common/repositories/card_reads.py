"""Read-side queries of cards: keyset pages that stay consistent while sets are replaced."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, tuple_

from glia_common.models import Card
from glia_common.repositories.base import Repository
from glia_common.repositories.conversations import Page
from glia_common.repositories.cursor import InvalidCursor, decode_cursor, encode_cursor


class StaleCursor(Exception):
    """The conversation's card set was replaced since the cursor was issued."""


class CardReadRepository(Repository):
    async def get(self, card_id: uuid.UUID) -> Card | None:
        return await self.session.get(Card, card_id)

    async def page_for_conversation(
        self,
        conversation_id: uuid.UUID,
        run_id: uuid.UUID | None,
        kind: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page[Card]:
        """Cards of the set ``run_id`` (the current one) in position order; the cursor is
        bound to that set."""
        stmt = select(Card).where(Card.conversation_id == conversation_id).order_by(Card.position)
        if kind:
            stmt = stmt.where(Card.kind == kind)
        if cursor:
            key = decode_cursor(cursor, ("r", "p"))
            if not isinstance(key["p"], int):
                raise InvalidCursor("malformed cursor")
            if run_id is None or key["r"] != str(run_id):
                raise StaleCursor
            stmt = stmt.where(Card.position > key["p"])
        rows = list((await self.session.execute(stmt.limit(limit + 1))).scalars())
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor({"r": str(rows[-1].run_id), "p": rows[-1].position})
        return Page(rows, next_cursor)

    async def page_for_user(self, kind: str | None, limit: int, cursor: str | None) -> Page[Card]:
        """All the caller's cards, newest sets first."""
        order = (Card.created_at.desc(), Card.conversation_id, Card.position)
        stmt = select(Card).order_by(*order)
        if kind:
            stmt = stmt.where(Card.kind == kind)
        if cursor:
            key = decode_cursor(cursor, ("c", "v", "p"))
            try:
                created, conv, pos = (
                    datetime.fromisoformat(key["c"]),
                    uuid.UUID(key["v"]),
                    int(key["p"]),
                )
            except (TypeError, ValueError) as exc:
                raise InvalidCursor("malformed cursor") from exc
            # created_at DESC, then conversation_id and position ASC.
            stmt = stmt.where(
                (Card.created_at < created)
                | (
                    (Card.created_at == created)
                    & (tuple_(Card.conversation_id, Card.position) > (conv, pos))
                )
            )
        rows = list((await self.session.execute(stmt.limit(limit + 1))).scalars())
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_cursor = encode_cursor(
                {
                    "c": last.created_at.isoformat(),
                    "v": str(last.conversation_id),
                    "p": last.position,
                }
            )
        return Page(rows, next_cursor)

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from glia_common.models import Card, ExtractionState
from glia_common.repositories.base import Repository

CARDS_CHANNEL = "glia_cards"


@dataclass(frozen=True, slots=True)
class NewCard:
    kind: str
    title: str
    body: str
    origin: str
    source_message_ids: Sequence[uuid.UUID]


class CardRepository(Repository):
    async def state(
        self, conversation_id: uuid.UUID, *, for_update: bool = False
    ) -> ExtractionState | None:
        stmt = select(ExtractionState).where(ExtractionState.conversation_id == conversation_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def replace(
        self,
        *,
        conversation_id: uuid.UUID,
        user_id: str,
        run_id: uuid.UUID,
        source_hash: str,
        source_message_count: int,
        cards: Sequence[NewCard],
    ) -> None:
        """Swap the conversation's card set in the caller's transaction: readers see the old
        set or the new one. A notification goes out when the transaction commits."""
        await self.session.execute(delete(Card).where(Card.conversation_id == conversation_id))
        if cards:
            await self.session.execute(
                insert(Card),
                [
                    {
                        "id": uuid.uuid4(),
                        "conversation_id": conversation_id,
                        "user_id": user_id,
                        "kind": c.kind,
                        "title": c.title,
                        "body": c.body,
                        "origin": c.origin,
                        "source_message_ids": list(c.source_message_ids),
                        "source_hash": source_hash,
                        "run_id": run_id,
                        "position": i,
                    }
                    for i, c in enumerate(cards)
                ],
            )
        values = {
            "source_hash": source_hash,
            "source_message_count": source_message_count,
            "run_id": run_id,
            "derived_at": func.clock_timestamp(),
        }
        await self.session.execute(
            pg_insert(ExtractionState)
            .values(conversation_id=conversation_id, user_id=user_id, **values)
            .on_conflict_do_update(index_elements=[ExtractionState.conversation_id], set_=values)
        )
        await self.session.execute(
            select(func.pg_notify(CARDS_CHANNEL, f"{user_id}\n{conversation_id}"))
        )


__all__ = ["CARDS_CHANNEL", "CardRepository", "NewCard"]

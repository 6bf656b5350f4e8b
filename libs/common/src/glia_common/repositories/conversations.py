from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from sqlalchemy import delete, select, tuple_

from glia_common.models import Conversation
from glia_common.repositories.base import Repository
from glia_common.repositories.cursor import InvalidCursor, decode_cursor, encode_cursor

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


class ConversationRepository(Repository):
    async def create(self, user_id: str, title: str | None) -> Conversation:
        conversation = Conversation(id=uuid.uuid4(), user_id=user_id, title=title)
        self.session.add(conversation)
        await self.session.flush()
        await self.session.refresh(conversation)
        return conversation

    async def get(self, conversation_id: uuid.UUID) -> Conversation | None:
        stmt = select(Conversation).where(Conversation.id == conversation_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list_recent(self, limit: int, cursor: str | None) -> Page[Conversation]:
        stmt = select(Conversation).order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        if cursor:
            key = decode_cursor(cursor, ("u", "i"))
            try:
                after = (datetime.fromisoformat(key["u"]), uuid.UUID(key["i"]))
            except (TypeError, ValueError) as exc:
                raise InvalidCursor("malformed cursor") from exc
            stmt = stmt.where(tuple_(Conversation.updated_at, Conversation.id) < after)
        rows = list((await self.session.execute(stmt.limit(limit + 1))).scalars())
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_cursor = encode_cursor({"u": last.updated_at.isoformat(), "i": str(last.id)})
        return Page(rows, next_cursor)

    async def delete(self, conversation_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            delete(Conversation)
            .where(Conversation.id == conversation_id)
            .returning(Conversation.id)
        )
        return result.first() is not None

"""Conversations and their messages as the API lists them: ORM queries on the request's
user-scoped session (row-level security hides other users' rows). These routes are not
hot paths, so they stay in the ORM; the turn's hot path is in ``turns.store``."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from glia_common.db.paging import (
    INT8_MAX,
    Page,
    decode_cursor,
    int_field,
    keyset_page,
    timestamp_field,
    uuid_field,
)
from glia_common.models import Conversation, Message


class ConversationStore:
    """Built from a session in a user-scoped transaction; it never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

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
        """Most recently updated first."""
        stmt = select(Conversation).order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        if cursor:
            key = decode_cursor(cursor, {"u": timestamp_field, "i": uuid_field})
            stmt = stmt.where(
                tuple_(Conversation.updated_at, Conversation.id) < (key["u"], key["i"])
            )
        rows = list((await self.session.execute(stmt.limit(limit + 1))).scalars())
        return keyset_page(rows, limit, lambda c: {"u": c.updated_at.isoformat(), "i": str(c.id)})

    async def messages(
        self, conversation_id: uuid.UUID, limit: int, cursor: str | None
    ) -> Page[Message]:
        """A conversation's messages in conversation order."""
        stmt = (
            select(Message).where(Message.conversation_id == conversation_id).order_by(Message.seq)
        )
        if cursor:
            key = decode_cursor(cursor, {"s": int_field(INT8_MAX)})
            stmt = stmt.where(Message.seq > key["s"])
        rows = list((await self.session.execute(stmt.limit(limit + 1))).scalars())
        return keyset_page(rows, limit, lambda m: {"s": m.seq})

    async def delete(self, conversation_id: uuid.UUID) -> bool:
        # Messages, turns, cards, runs and pending outbox rows go with it (ON DELETE CASCADE).
        result = await self.session.execute(
            delete(Conversation)
            .where(Conversation.id == conversation_id)
            .returning(Conversation.id)
        )
        return result.first() is not None

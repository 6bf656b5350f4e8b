from __future__ import annotations

import uuid

from sqlalchemy import select

from glia_common.models import Message
from glia_common.repositories.base import Repository


class MessageRepository(Repository):
    async def add(
        self,
        *,
        conversation_id: uuid.UUID,
        user_id: str,
        role: str,
        content: str,
        status: str,
    ) -> Message:
        message = Message(
            id=uuid.uuid4(),
            conversation_id=conversation_id,
            user_id=user_id,
            role=role,
            content=content,
            status=status,
        )
        self.session.add(message)
        await self.session.flush()
        return message

    async def get(self, message_id: uuid.UUID) -> Message | None:
        return await self.session.get(Message, message_id)

    async def for_conversation(self, conversation_id: uuid.UUID) -> list[Message]:
        stmt = (
            select(Message).where(Message.conversation_id == conversation_id).order_by(Message.seq)
        )
        return list((await self.session.execute(stmt)).scalars())

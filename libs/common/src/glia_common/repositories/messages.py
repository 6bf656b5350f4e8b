from __future__ import annotations

import uuid

from sqlalchemy import func, insert, select, update

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

    async def add_exchange(
        self, *, conversation_id: uuid.UUID, user_id: str, content: str
    ) -> tuple[uuid.UUID, uuid.UUID]:
        """The user's message (complete) and an empty streaming reply, in one statement
        and in this order; returns their ids."""
        user_message_id, assistant_id = uuid.uuid4(), uuid.uuid4()
        common = {"conversation_id": conversation_id, "user_id": user_id}
        await self.session.execute(
            insert(Message).values(
                [
                    {
                        **common,
                        "id": user_message_id,
                        "role": "user",
                        "content": content,
                        "status": "complete",
                    },
                    {
                        **common,
                        "id": assistant_id,
                        "role": "assistant",
                        "content": "",
                        "status": "streaming",
                    },
                ]
            )
        )
        return user_message_id, assistant_id

    async def get(self, message_id: uuid.UUID) -> Message | None:
        return await self.session.get(Message, message_id)

    async def for_conversation(self, conversation_id: uuid.UUID) -> list[Message]:
        stmt = (
            select(Message).where(Message.conversation_id == conversation_id).order_by(Message.seq)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def latest_complete(self, conversation_id: uuid.UUID, limit: int) -> list[Message]:
        """The last ``limit`` complete messages, oldest first."""
        stmt = (
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.status == "complete")
            .order_by(Message.seq.desc())
            .limit(limit)
        )
        rows = list((await self.session.execute(stmt)).scalars())
        rows.reverse()
        return rows

    async def checkpoint(self, message_id: uuid.UUID, content: str) -> None:
        """Save streamed text so far; also the heartbeat that keeps a live turn from being swept."""
        await self.session.execute(
            update(Message)
            .where(Message.id == message_id, Message.status == "streaming")
            .values(content=content, updated_at=func.clock_timestamp())
        )

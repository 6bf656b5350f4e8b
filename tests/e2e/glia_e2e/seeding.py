"""Rows for tests that start below the API: a conversation and its messages, written as
the app role under the user's row-level-security scope (as the chat API writes them)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from glia_common.settings import driver_database_url

# (role, content, status); a plain string is a complete message, roles alternating.
MessageSpec = tuple[str, str, str]


async def seed_conversation(
    database_url: str,
    user_id: str,
    messages: Sequence[str | MessageSpec] = (),
    *,
    conversation_id: uuid.UUID | None = None,
    title: str | None = None,
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """Create the conversation (unless ``conversation_id`` is given) and append the
    messages; returns the conversation id and the new messages' ids."""
    conn = await asyncpg.connect(driver_database_url(database_url))
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('glia.user_id', $1, true)", user_id)
            if conversation_id is None:
                conversation_id = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO conversations (id, user_id, title) VALUES ($1, $2, $3)",
                    conversation_id,
                    user_id,
                    title,
                )
            ids = []
            for i, spec in enumerate(messages):
                role, content, status = (
                    ("user" if i % 2 == 0 else "assistant", spec, "complete")
                    if isinstance(spec, str)
                    else spec
                )
                message_id = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO messages (id, conversation_id, user_id, role, content, status)"
                    " VALUES ($1, $2, $3, $4, $5, $6)",
                    message_id,
                    conversation_id,
                    user_id,
                    role,
                    content,
                    status,
                )
                ids.append(message_id)
    finally:
        await conn.close()
    return conversation_id, ids

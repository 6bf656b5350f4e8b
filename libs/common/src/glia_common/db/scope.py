"""The user-scoped transaction: the one way application code reaches user rows.

Row-level security policies compare ``user_id`` with the transaction setting
``glia.user_id``. It is set with ``set_config(..., true)`` (transaction-local), so
it never leaks to the next user of a pooled connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def set_user_scope(session: AsyncSession, user_id: str) -> None:
    await session.execute(select(func.set_config("glia.user_id", user_id, True)))


@asynccontextmanager
async def user_transaction(
    sessionmaker: async_sessionmaker[AsyncSession], user_id: str, *, read_only: bool = False
) -> AsyncIterator[AsyncSession]:
    """One transaction as ``user_id``: commits on success, rolls back on error."""
    async with sessionmaker() as session, session.begin():
        if read_only:
            await session.execute(
                select(
                    func.set_config("transaction_read_only", "on", True),
                    func.set_config("glia.user_id", user_id, True),
                )
            )
        else:
            await set_user_scope(session, user_id)
        yield session


@asynccontextmanager
async def system_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A transaction with no user scope: sees no user rows; for the narrow
    SECURITY DEFINER functions that serve cross-user work (outbox relay, sweepers)."""
    async with sessionmaker() as session, session.begin():
        yield session

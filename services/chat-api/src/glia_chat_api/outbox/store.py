"""The relay's statements: its cross-user path is SECURITY DEFINER functions, nothing
broader. ORM sessions (a system transaction, no user scope): the relay works in
batches, so a statement's cost is spread over many rows."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from glia_common.models import OutboxMessage


class OutboxStore:
    """Built from a session in a system transaction; it never commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(self, batch: int) -> list[OutboxMessage]:
        """Lock up to ``batch`` unsent rows of any user until this transaction ends."""
        stmt = select(OutboxMessage).from_statement(
            text("SELECT * FROM glia_outbox_claim(:batch)").bindparams(batch=batch)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def mark_sent(self, ids: list[int]) -> None:
        await self.session.execute(select(func.glia_outbox_mark_sent(ids)))

    async def mark_failed(self, ids: list[int], error: str) -> None:
        await self.session.execute(select(func.glia_outbox_mark_failed(ids, error)))

    async def purge_sent(self, older_than_s: float) -> int:
        result = await self.session.execute(
            text("SELECT glia_outbox_purge(make_interval(secs => :s))").bindparams(s=older_than_s)
        )
        return int(result.scalar_one())

    async def stats(self) -> tuple[int, float]:
        row = (await self.session.execute(text("SELECT * FROM glia_outbox_stats()"))).one()
        return int(row[0]), float(row[1])

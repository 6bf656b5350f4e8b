from __future__ import annotations

from sqlalchemy import func, select, text

from glia_common.models import OutboxMessage
from glia_common.repositories.base import Repository


class OutboxRepository(Repository):
    # The cross-user path of the relay: SECURITY DEFINER functions, nothing broader.

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

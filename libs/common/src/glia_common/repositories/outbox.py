from __future__ import annotations

import uuid

from sqlalchemy import func, insert, select, text

from glia_common.contracts.extraction import EXTRACTION_ROUTING_KEY, ExtractionRequested
from glia_common.models import OutboxMessage
from glia_common.repositories.base import Repository


class OutboxRepository(Repository):
    async def add_extraction_request(
        self,
        *,
        conversation_id: uuid.UUID,
        user_id: str,
        request_id: str,
        headers: dict[str, str],
    ) -> None:
        payload = ExtractionRequested.now(conversation_id, user_id, request_id)
        await self.session.execute(
            insert(OutboxMessage).values(
                user_id=user_id,
                conversation_id=conversation_id,
                routing_key=EXTRACTION_ROUTING_KEY,
                payload=payload.model_dump(mode="json"),
                headers=headers,
            )
        )

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

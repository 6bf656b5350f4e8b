from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, insert, select, text, update

from glia_common.contracts.extraction import EXTRACTION_ROUTING_KEY
from glia_common.models import Turn
from glia_common.repositories.base import Repository


class TurnRepository(Repository):
    async def by_idempotency_key(self, key: str) -> Turn | None:
        # user_id is implied by row-level security; the unique index is (user_id, key).
        stmt = select(Turn).where(Turn.idempotency_key == key)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, **values: Any) -> uuid.UUID:
        turn_id = uuid.uuid4()
        await self.session.execute(insert(Turn).values(id=turn_id, **values))
        return turn_id

    async def finish(
        self,
        turn_id: uuid.UUID,
        *,
        finish_reason: str | None = None,
        usage: dict[str, Any] | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        error_retryable: bool | None = None,
    ) -> None:
        await self.session.execute(
            update(Turn)
            .where(Turn.id == turn_id)
            .values(
                finish_reason=finish_reason,
                usage=usage,
                error_code=error_code,
                error_message=error_message,
                error_retryable=error_retryable,
                finished_at=func.clock_timestamp(),
            )
        )

    async def abandon_stale(self, stale_after_s: float) -> int:
        """Cross-user (SECURITY DEFINER): settle turns whose stream stopped checkpointing."""
        result = await self.session.execute(
            text("SELECT glia_abandon_stale_turns(make_interval(secs => :s), :rk)").bindparams(
                s=stale_after_s, rk=EXTRACTION_ROUTING_KEY
            )
        )
        return int(result.scalar_one())

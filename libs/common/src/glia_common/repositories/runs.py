from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update

from glia_common.models import ExtractionRun
from glia_common.repositories.base import Repository


class RunRepository(Repository):
    async def start(self, run: ExtractionRun) -> ExtractionRun:
        self.session.add(run)
        await self.session.flush()
        return run

    async def succeeded_for(
        self, conversation_id: uuid.UUID, source_hash: str
    ) -> ExtractionRun | None:
        stmt = (
            select(ExtractionRun)
            .where(
                ExtractionRun.conversation_id == conversation_id,
                ExtractionRun.source_hash == source_hash,
                ExtractionRun.status == "succeeded",
            )
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def count_for(self, conversation_id: uuid.UUID, source_hash: str) -> int:
        stmt = select(func.count()).where(
            ExtractionRun.conversation_id == conversation_id,
            ExtractionRun.source_hash == source_hash,
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def abandon_running(self, conversation_id: uuid.UUID) -> int:
        """Runs left 'running' by a worker that died. Only call while holding the
        conversation's extraction lock: then no live run can exist."""
        result = await self.session.execute(
            update(ExtractionRun)
            .where(
                ExtractionRun.conversation_id == conversation_id, ExtractionRun.status == "running"
            )
            .values(
                status="failed",
                error="abandoned: the worker stopped before finishing",
                finished_at=func.clock_timestamp(),
            )
            .returning(ExtractionRun.id)
        )
        return len(result.all())

    async def finish(self, run_id: uuid.UUID, **values: Any) -> None:
        await self.session.execute(
            update(ExtractionRun)
            .where(ExtractionRun.id == run_id)
            .values(finished_at=func.clock_timestamp(), **values)
        )

    async def for_conversation(self, conversation_id: uuid.UUID) -> list[ExtractionRun]:
        stmt = (
            select(ExtractionRun)
            .where(ExtractionRun.conversation_id == conversation_id)
            .order_by(ExtractionRun.started_at, ExtractionRun.id)
        )
        return list((await self.session.execute(stmt)).scalars())

from __future__ import annotations

import uuid

from sqlalchemy import select

from glia_common.models import ExtractionRun
from glia_common.repositories.base import Repository


class RunRepository(Repository):
    async def for_conversation(self, conversation_id: uuid.UUID) -> list[ExtractionRun]:
        stmt = (
            select(ExtractionRun)
            .where(ExtractionRun.conversation_id == conversation_id)
            .order_by(ExtractionRun.started_at, ExtractionRun.id)
        )
        return list((await self.session.execute(stmt)).scalars())

"""Run records as operators read them (glia-admin): ORM queries, off the hot path; the
worker writes runs through ``extraction.store``."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from glia_common.models import ExtractionRun


class RunRecords:
    """Built from a session in the owner's user-scoped transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def for_conversation(self, conversation_id: uuid.UUID) -> list[ExtractionRun]:
        stmt = (
            select(ExtractionRun)
            .where(ExtractionRun.conversation_id == conversation_id)
            .order_by(ExtractionRun.started_at, ExtractionRun.id)
        )
        return list((await self.session.execute(stmt)).scalars())

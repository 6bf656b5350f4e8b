"""Annotated dependency aliases for the card query routes (read-only sessions)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from glia_common.db import user_transaction
from glia_common.web.security import CurrentPrincipal


async def _read_session(
    request: Request, principal: CurrentPrincipal
) -> AsyncIterator[AsyncSession]:
    async with user_transaction(
        request.app.state.sessionmaker, principal.user_id, read_only=True
    ) as session:
        yield session


ReadSession = Annotated[AsyncSession, Depends(_read_session, scope="function")]

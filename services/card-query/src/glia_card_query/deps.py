"""Annotated dependency aliases for the card query routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from glia_common.repositories.card_reads import CardReads, read_transaction
from glia_common.web.security import CurrentPrincipal


async def _card_reads(request: Request, principal: CurrentPrincipal) -> AsyncIterator[CardReads]:
    # A read-only transaction as the caller, ended before the response is sent.
    async with read_transaction(request.app.state.database, principal.user_id) as reads:
        yield reads


Reads = Annotated[CardReads, Depends(_card_reads, scope="function")]

"""Settles turns whose process died: a message still 'streaming' whose turn has not
checkpointed for ``stale_after_s`` becomes 'incomplete' (with the text saved so far),
and extraction is requested, as the turn's own settle would have done.

Runs in every chat API replica. The work is one SECURITY DEFINER function (the only
cross-user path of turns), which locks rows with SKIP LOCKED, so replicas never
settle the same turn twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from glia_common.db import system_transaction
from glia_common.messaging import EXTRACTION_ROUTING_KEY
from glia_common.telemetry import get_logger

log = get_logger(__name__)

ABANDON_STALE = text("SELECT glia_abandon_stale_turns(make_interval(secs => :s), :rk)")


class StaleTurnSweeper:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        stale_after_s: float,
        interval_s: float = 30.0,
        on_settled: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._stale_after_s = stale_after_s
        self._interval_s = interval_s
        self._on_settled = on_settled

    async def sweep(self) -> int:
        """Settle the stale turns of every user; how many there were."""
        async with system_transaction(self._sessionmaker) as session:
            result = await session.execute(
                ABANDON_STALE.bindparams(s=self._stale_after_s, rk=EXTRACTION_ROUTING_KEY)
            )
            swept = int(result.scalar_one())
        if swept:
            log.warning("turns.abandoned_settled", count=swept)
            self._on_settled()  # their extraction requests wait in the outbox
        return swept

    async def run_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("turns.sweep_error", error=type(exc).__name__)
            await asyncio.sleep(self._interval_s)

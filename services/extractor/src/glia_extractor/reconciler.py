"""Self-healing: re-request extraction for conversations whose request seems lost.

Runs in every replica; the claim (a SECURITY DEFINER function with FOR UPDATE SKIP
LOCKED that stamps extraction_requested_at) hands each conversation to one replica.
"""

from __future__ import annotations

import asyncio
import uuid

from faststream.rabbit import RabbitBroker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from glia_common.db import system_transaction
from glia_common.messaging import (
    EXCHANGE,
    EXTRACTION_ROUTING_KEY,
    OPERATOR_EXCHANGE,
    REPLAY_ROUTING_KEY,
    ExtractionRequested,
)
from glia_common.telemetry import get_logger
from glia_extractor import metrics

log = get_logger(__name__)


async def request_extraction(
    broker: RabbitBroker,
    conversation_id: uuid.UUID,
    user_id: str,
    request_id: str,
    *,
    replay: bool = False,
) -> None:
    """A replay (glia-admin) goes through the operator exchange: the extractor re-runs it
    even when the cards are current, which a request through the main exchange never is."""
    message = ExtractionRequested.now(conversation_id, user_id, request_id)
    await broker.publish(
        message.model_dump(mode="json"),
        exchange=OPERATOR_EXCHANGE if replay else EXCHANGE,
        routing_key=REPLAY_ROUTING_KEY if replay else EXTRACTION_ROUTING_KEY,
        persist=True,
        mandatory=True,
        correlation_id=request_id,
        content_type="application/json",
        timeout=10.0,
    )


class Reconciler:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        broker: RabbitBroker,
        *,
        interval_s: float,
        grace_s: float,
        batch: int = 200,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._broker = broker
        self._interval_s = interval_s
        self._grace_s = grace_s
        self._batch = batch

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.reconcile_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reconciler.error", error=type(exc).__name__, detail=str(exc)[:200])

    async def reconcile_once(self) -> int:
        async with system_transaction(self._sessionmaker) as session:
            rows = (
                await session.execute(
                    text(
                        "SELECT conversation_id, user_id FROM "
                        "glia_claim_stale_conversations(make_interval(secs => :g), :n)"
                    ),
                    {"g": self._grace_s, "n": self._batch},
                )
            ).all()
            # Publish inside the claim's transaction: if publishing fails, the stamp is
            # rolled back and the next round tries again.
            for conversation_id, user_id in rows:
                await request_extraction(
                    self._broker, conversation_id, user_id, f"reconciler-{uuid.uuid4().hex[:12]}"
                )
        if rows:
            metrics.RECONCILED.inc(len(rows))
            log.warning("reconciler.requested", count=len(rows))
        return len(rows)

"""The outbox relay: publishes extraction requests committed by turns.

Rows are claimed with FOR UPDATE SKIP LOCKED (through a SECURITY DEFINER function,
the relay's only cross-user path) inside a transaction that stays open while the
batch is published with publisher confirms, then marked sent. Several replicas never
publish the same row at once; a crash between publish and commit publishes it again,
which the consumer's idempotency absorbs. While RabbitMQ is down rows wait, and the
relay keeps reconnecting: no restart needed.
"""

from __future__ import annotations

import asyncio
import contextlib

from faststream.rabbit import RabbitBroker
from opentelemetry import context as otel_context
from opentelemetry import propagate
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from glia_chat_api import metrics
from glia_chat_api.outbox.store import OutboxStore
from glia_common.db import system_transaction
from glia_common.messaging import EXCHANGE, declare_topology
from glia_common.models import OutboxMessage
from glia_common.telemetry import get_logger

log = get_logger(__name__)

PUBLISH_TIMEOUT_S = 5.0
MAX_BACKOFF_S = 10.0
STATS_INTERVAL_S = 5.0
PURGE_EVERY_ROUNDS = 720  # every hour
PURGE_SENT_AFTER_S = 24 * 3600.0


class OutboxRelay:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        broker: RabbitBroker,
        *,
        batch_size: int,
        poll_interval_s: float,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._broker = broker
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._connected = False
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        """Called after a commit that wrote to the outbox: publish now, not at the next poll."""
        self._wake.set()

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="outbox-relay"),
            asyncio.create_task(self._maintain(), name="outbox-maintenance"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self._broker.stop()

    async def _ensure_connected(self) -> None:
        if self._connected:
            return
        await self._broker.connect()
        await declare_topology(self._broker)
        self._connected = True
        log.info("outbox.broker_connected")

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._ensure_connected()
                published = await self.publish_batch()
                backoff = 0.5
                if published >= self._batch_size:
                    continue  # more are waiting
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox.relay_error", error=type(exc).__name__, detail=str(exc)[:200])
                if self._connected and not await self._broker_reachable():
                    self._connected = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)

    async def _broker_reachable(self) -> bool:
        try:
            return await self._broker.ping(timeout=1.0)
        except Exception:
            return False

    async def publish_batch(self) -> int:
        """Publish one batch of unsent rows; the number published."""
        async with system_transaction(self._sessionmaker) as session:
            outbox = OutboxStore(session)
            rows = await outbox.claim(self._batch_size)
            if not rows:
                return 0
            results = await asyncio.gather(
                *(self._publish(row) for row in rows), return_exceptions=True
            )
            sent = [row.id for row, r in zip(rows, results, strict=True) if r is None]
            failed = [row.id for row, r in zip(rows, results, strict=True) if r is not None]
            metrics.OUTBOX_PUBLISHED.inc(len(sent))
            metrics.OUTBOX_FAILURES.inc(len(failed))
            if sent:
                await outbox.mark_sent(sent)
            if failed:
                first = next(r for r in results if r is not None)
                await outbox.mark_failed(failed, f"{type(first).__name__}: {first}")
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(rows)} outbox messages were not published")
        return len(sent)

    async def _publish(self, row: OutboxMessage) -> None:
        # Continue the trace of the request that wrote the row: its W3C headers travel
        # with the message (when spans are exported, the publish span's replace them).
        token = otel_context.attach(propagate.extract(row.headers or {}))
        try:
            await self._broker.publish(
                row.payload,
                headers=dict(row.headers or {}),
                exchange=EXCHANGE,
                routing_key=row.routing_key,
                persist=True,
                mandatory=True,
                message_id=f"outbox-{row.id}",
                correlation_id=str(row.payload.get("request_id", "")),
                content_type="application/json",
                timeout=PUBLISH_TIMEOUT_S,
            )
        finally:
            otel_context.detach(token)

    async def _maintain(self) -> None:
        """Report the backlog; now and then forget rows sent long ago."""
        rounds = 0
        while True:
            try:
                async with system_transaction(self._sessionmaker) as session:
                    outbox = OutboxStore(session)
                    backlog, oldest_age_s = await outbox.stats()
                    purged = await outbox.purge_sent(PURGE_SENT_AFTER_S) if rounds == 0 else 0
                metrics.OUTBOX_BACKLOG.set(backlog)
                metrics.OUTBOX_OLDEST_AGE.set(oldest_age_s)
                if purged:
                    log.info("outbox.purged", count=purged)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox.maintenance_error", error=type(exc).__name__)
            rounds = (rounds + 1) % PURGE_EVERY_ROUNDS
            await asyncio.sleep(STATS_INTERVAL_S)

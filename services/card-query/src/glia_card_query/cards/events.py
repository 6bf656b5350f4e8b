"""Live card updates: one LISTEN connection per process, fanned out to SSE subscribers.

The extractor's card replacement sends a NOTIFY on ``CARDS_CHANNEL`` in its own
transaction, so a notification arrives only after the new set is committed. It names
the conversation only; subscribers are keyed by conversation, and a subscription
begins only after the conversation was read under its owner's scope, so a
notification reaches the owner only.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Iterable

import asyncpg

from glia_common.messaging import CARDS_CHANNEL, parse_card_change
from glia_common.telemetry import get_logger

log = get_logger(__name__)


class CardEventHub:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._subscribers: dict[uuid.UUID, set[asyncio.Queue[None]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="card-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def subscribe(self, conversation_id: uuid.UUID):  # type: ignore[no-untyped-def]
        """A queue that receives one item per replacement of this conversation's cards.
        The caller has checked that the conversation is its user's."""
        queue: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        key = conversation_id
        self._subscribers[key].add(queue)
        try:
            yield queue
        finally:
            self._subscribers[key].discard(queue)
            if not self._subscribers[key]:
                del self._subscribers[key]

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        conversation_id = parse_card_change(payload)
        if conversation_id is not None:
            _wake(self._subscribers.get(conversation_id, ()))

    async def _listen_forever(self) -> None:
        delay = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                await conn.add_listener(CARDS_CHANNEL, self._on_notify)
                self.listening.set()
                delay = 0.5
                # Notifications missed while disconnected: wake everyone to re-read.
                for queues in list(self._subscribers.values()):
                    _wake(queues)
                while not conn.is_closed():
                    await asyncio.sleep(1.0)
                    await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("card_events.listener_error", error=type(exc).__name__)
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def _wake(queues: Iterable[asyncio.Queue[None]]) -> None:
    # Coalesce: a subscriber that has not caught up needs only one wake-up.
    for queue in queues:
        if queue.empty():
            queue.put_nowait(None)

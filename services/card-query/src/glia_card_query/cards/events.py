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
from collections.abc import Iterable, Iterator

from glia_common.db.listen import PgListener
from glia_common.messaging import CARDS_CHANNEL, parse_card_change


class CardEventHub:
    def __init__(self, dsn: str) -> None:
        self._subscribers: dict[uuid.UUID, set[asyncio.Queue[None]]] = defaultdict(set)
        # Notifications missed while disconnected: wake everyone to re-read.
        self._listener = PgListener(
            dsn, [CARDS_CHANNEL], self._on_notify, on_connected=self._wake_all
        )
        self.listening = self._listener.listening

    def start(self) -> None:
        self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()

    @contextlib.contextmanager
    def subscribe(self, conversation_id: uuid.UUID) -> Iterator[asyncio.Queue[None]]:
        """A queue that receives one item per replacement of this conversation's cards.
        The caller has checked that the conversation is its user's."""
        queue: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        self._subscribers[conversation_id].add(queue)
        try:
            yield queue
        finally:
            self._subscribers[conversation_id].discard(queue)
            if not self._subscribers[conversation_id]:
                del self._subscribers[conversation_id]

    def _on_notify(self, _channel: str, payload: str) -> None:
        conversation_id = parse_card_change(payload)
        if conversation_id is not None:
            _wake(self._subscribers.get(conversation_id, ()))

    def _wake_all(self) -> None:
        for queues in list(self._subscribers.values()):
            _wake(queues)


def _wake(queues: Iterable[asyncio.Queue[None]]) -> None:
    # Coalesce: a subscriber that has not caught up needs only one wake-up.
    for queue in queues:
        if queue.empty():
            queue.put_nowait(None)

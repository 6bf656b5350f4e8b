"""Live card updates: one LISTEN connection per process, fanned out to SSE subscribers.

The extractor's card replacement sends a NOTIFY on ``CARDS_CHANNEL`` in its own
transaction, so a notification arrives only after the new set is committed. It names the
conversation only. Subscriptions are grouped by conversation; a group is opened only
after the conversation was read under its owner's scope, so it belongs to one user.
One notification triggers one freshness read for the whole group, shared by all its
subscribers, however many there are.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from glia_common.db.listen import PgListener
from glia_common.messaging import CARDS_CHANNEL, parse_card_change
from glia_common.telemetry import get_logger

log = get_logger(__name__)

T = TypeVar("T")
# What a subscriber receives: the conversation's latest freshness, or GONE once the
# conversation no longer exists.
GONE = object()


class TooManySubscriptions(Exception):
    pass


@dataclass
class _Group:
    """The subscriptions of one conversation (one owner)."""

    user_id: str
    queues: set[asyncio.Queue[object]] = field(default_factory=set)
    reading: asyncio.Task[None] | None = None
    stale: bool = False  # a notification came while a read was running


class CardEventHub:
    def __init__(
        self,
        dsn: str,
        read_freshness: Callable[[str, uuid.UUID], Awaitable[object | None]],
        *,
        max_per_user: int,
    ) -> None:
        self._read = read_freshness
        self._max_per_user = max_per_user
        self._groups: dict[uuid.UUID, _Group] = {}
        self._per_user: dict[str, int] = {}
        # Notifications missed while disconnected: every group reads again.
        self._listener = PgListener(
            dsn, [CARDS_CHANNEL], self._on_notify, on_connected=self._refresh_all
        )
        self.listening = self._listener.listening

    def start(self) -> None:
        self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()
        for group in self._groups.values():
            if group.reading is not None:
                group.reading.cancel()

    @contextlib.contextmanager
    def subscribe(
        self, user_id: str, conversation_id: uuid.UUID
    ) -> Iterator[asyncio.Queue[object]]:
        """A queue holding the conversation's latest freshness after each replacement of
        its cards. The caller has checked that the conversation is ``user_id``'s.
        TooManySubscriptions when the user already has the most this process allows."""
        if self._per_user.get(user_id, 0) >= self._max_per_user:
            raise TooManySubscriptions
        group = self._groups.setdefault(conversation_id, _Group(user_id))
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1)
        group.queues.add(queue)
        self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
        try:
            yield queue
        finally:
            group.queues.discard(queue)
            self._per_user[user_id] -= 1
            if not self._per_user[user_id]:
                del self._per_user[user_id]
            if not group.queues:
                if group.reading is not None:
                    group.reading.cancel()
                del self._groups[conversation_id]

    def subscriptions(self, user_id: str) -> int:
        return self._per_user.get(user_id, 0)

    def _on_notify(self, _channel: str, payload: str) -> None:
        conversation_id = parse_card_change(payload)
        if conversation_id is not None and conversation_id in self._groups:
            self._refresh(conversation_id)

    def _refresh_all(self) -> None:
        for conversation_id in list(self._groups):
            self._refresh(conversation_id)

    def _refresh(self, conversation_id: uuid.UUID) -> None:
        group = self._groups[conversation_id]
        if group.reading is not None and not group.reading.done():
            group.stale = True  # read once more when this read is done
            return
        group.reading = asyncio.create_task(self._read_for(conversation_id, group))

    async def _read_for(self, conversation_id: uuid.UUID, group: _Group) -> None:
        while True:
            group.stale = False
            try:
                freshness = await self._read(group.user_id, conversation_id)
            except Exception as exc:
                log.warning("card_events.read_failed", error=type(exc).__name__)
                return
            for queue in list(group.queues):
                _offer(queue, GONE if freshness is None else freshness)
            if not group.stale:
                return


def _offer(queue: asyncio.Queue[T], item: T) -> None:
    """Latest wins: a subscriber that has not caught up gets only the newest value."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)

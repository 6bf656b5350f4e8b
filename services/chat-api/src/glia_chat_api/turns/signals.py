"""Signals about turns between chat API replicas, over PostgreSQL LISTEN/NOTIFY.

A turn runs in the replica that started it, but a client may resume its stream or
cancel it through any replica (no sticky sessions). Three signals, each naming the
assistant message only (a listener learns nothing else; what a signal leads to is read
under the user's own scope):

- ``follow:<id>``: a replica streams a turn it does not run. The runner checkpoints the
  followed turn often and announces each checkpoint.
- ``progress:<id>``: a followed turn checkpointed or settled (sent in that transaction).
- ``cancel:<id>``: the owner asked to cancel the turn.

Notifications are not durable: followers also poll, and cancel falls back to settling
the turn in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Literal

from glia_common.db.listen import PgListener

TURNS_CHANNEL = "glia_turns"

Verb = Literal["follow", "progress", "cancel"]


def signal_payload(verb: Verb, message_id: uuid.UUID) -> str:
    return f"{verb}:{message_id}"


class TurnSignals:
    def __init__(
        self,
        dsn: str,
        *,
        on_follow: Callable[[uuid.UUID], None],
        on_cancel: Callable[[uuid.UUID], object],
    ) -> None:
        self._on_follow = on_follow
        self._on_cancel = on_cancel
        self._watchers: dict[uuid.UUID, set[asyncio.Queue[None]]] = defaultdict(set)
        self._listener = PgListener(
            dsn, [TURNS_CHANNEL], self._on_notify, on_connected=self._wake_all
        )
        self.listening = self._listener.listening

    def start(self) -> None:
        self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()

    async def send(self, verb: Verb, message_id: uuid.UUID) -> bool:
        return await self._listener.notify(TURNS_CHANNEL, signal_payload(verb, message_id))

    @contextlib.contextmanager
    def watch(self, message_id: uuid.UUID) -> Iterator[asyncio.Queue[None]]:
        """A queue that gets an item when the turn reports progress (coalesced)."""
        queue: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        self._watchers[message_id].add(queue)
        try:
            yield queue
        finally:
            self._watchers[message_id].discard(queue)
            if not self._watchers[message_id]:
                del self._watchers[message_id]

    def _on_notify(self, _channel: str, payload: str) -> None:
        verb, _, raw_id = payload.partition(":")
        try:
            message_id = uuid.UUID(raw_id)
        except ValueError:
            return
        if verb == "progress":
            _wake(self._watchers.get(message_id, ()))
        elif verb == "follow":
            self._on_follow(message_id)
        elif verb == "cancel":
            self._on_cancel(message_id)

    def _wake_all(self) -> None:
        for queues in list(self._watchers.values()):
            _wake(queues)


def _wake(queues: set[asyncio.Queue[None]] | tuple[()]) -> None:
    for queue in queues:
        if queue.empty():
            queue.put_nowait(None)

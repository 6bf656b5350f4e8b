"""One PostgreSQL LISTEN connection per process, kept alive and reconnected.

Services fan notifications out to their own subscribers in memory: one connection per
process, whatever the number of subscribers. Notifications sent while the connection
was down are lost, so ``on_connected`` runs after every (re)connection: subscribers
re-read what they watch instead of waiting for a notification that will not come.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import asyncpg

from glia_common.telemetry import get_logger

log = get_logger(__name__)

KEEPALIVE_S = 1.0
MAX_BACKOFF_S = 10.0


class PgListener:
    def __init__(
        self,
        dsn: str,
        channels: Sequence[str],
        on_notify: Callable[[str, str], None],
        on_connected: Callable[[], None] = lambda: None,
    ) -> None:
        self._dsn = dsn
        self._channels = tuple(channels)
        self._on_notify = on_notify
        self._on_connected = on_connected
        self._conn: asyncpg.Connection | None = None
        # One query at a time on the connection: the keepalive and notify() share it.
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="pg-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def notify(self, channel: str, payload: str) -> bool:
        """Send a notification on the listening connection; False when it is down."""
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            async with self._lock:
                await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return False
        return True

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        try:
            self._on_notify(channel, payload)
        except Exception:  # one bad subscriber must not stop the listener
            log.exception("pg_listen.subscriber_error", channel=channel)

    async def _listen_forever(self) -> None:
        delay = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                for channel in self._channels:
                    await conn.add_listener(channel, self._dispatch)
                self._conn = conn
                self.listening.set()
                delay = 0.5
                self._on_connected()
                while not conn.is_closed():
                    await asyncio.sleep(KEEPALIVE_S)
                    async with self._lock:
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("pg_listen.error", error=type(exc).__name__)
            finally:
                self.listening.clear()
                self._conn = None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

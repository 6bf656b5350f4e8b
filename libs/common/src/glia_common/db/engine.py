from __future__ import annotations

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from glia_common.settings import DatabaseSettings, async_database_url, driver_database_url

# Keep the server from holding a transaction open forever if a client stalls.
SERVER_SETTINGS = {
    "idle_in_transaction_session_timeout": "60000",
    # What quoting a literal relies on (db/scope.py); PostgreSQL's default, made sure of.
    "standard_conforming_strings": "on",
}
# And keep a client from waiting forever on a server that stopped answering (a peer gone
# without a reset reaching us): no statement here takes this long. A statement that may
# (the extractor's lock wait) passes its own timeout.
COMMAND_TIMEOUT_S = 60.0


def create_engine(
    settings: DatabaseSettings,
    *,
    url: str | None = None,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pre_ping: bool = True,
) -> AsyncEngine:
    """An asyncpg engine for the app role (subject to row-level security), or for the
    role of ``url``.

    ``pre_ping`` costs a round trip per checkout; a worker that retries on connection
    errors anyway can do without it (the pool drops connections that fail)."""
    return _create_async_engine(
        async_database_url(url or settings.database_url),
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=settings.database_max_overflow if max_overflow is None else max_overflow,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        connect_args={"server_settings": SERVER_SETTINGS, "command_timeout": COMMAND_TIMEOUT_S},
    )


def create_worker_engine(settings: DatabaseSettings, app_engine: AsyncEngine) -> AsyncEngine:
    """The engine of a service's background cross-user work (the worker role): the app
    engine itself when GLIA_DATABASE_WORKER_URL is unset or the same, otherwise a small
    one of its own - background loops hold a connection or two at a time."""
    if settings.worker_database_url == settings.database_url:
        return app_engine
    return create_engine(settings, url=settings.worker_database_url, pool_size=2, max_overflow=1)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def create_driver_pool(settings: DatabaseSettings, size: int | None = None) -> asyncpg.Pool:
    """A plain asyncpg pool for the app role, for a service whose every query runs on
    the driver (card query): checking a connection out of it costs a fraction of an
    engine checkout. Its ceiling is an engine's steady size, without overflow: one
    CPU-bound process gains nothing from more connections (measured: ~5% more reads/s
    at 20 than at 30). It pings nothing either: a connection that died with the server
    is found when its transaction begins (``user_connection``).

    Nor does it reset a connection's session when it comes back: everything done on
    these connections is transaction-scoped (``set_config(..., true)``, no session
    advisory locks, no LISTEN), and asyncpg still rolls back an open transaction. The
    default reset is one more round trip per checkout (a quarter of a card read's)."""
    return await asyncpg.create_pool(
        driver_database_url(settings.database_url),
        # Opened as needed, closed after 5 idle minutes: every replica of every service
        # holding its whole pool would exhaust a default max_connections (100).
        min_size=1,
        max_size=size or settings.database_pool_size,
        max_inactive_connection_lifetime=300,
        server_settings=SERVER_SETTINGS,
        command_timeout=COMMAND_TIMEOUT_S,
        reset=_nothing_outlives_a_transaction,
    )


async def _nothing_outlives_a_transaction(conn: asyncpg.Connection) -> None:
    """The pool's reset: asyncpg has already ended any open transaction."""

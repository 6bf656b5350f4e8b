from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from glia_common.settings import Settings, async_database_url


def create_engine(
    settings: Settings,
    *,
    url: str | None = None,
    pool_size: int | None = None,
    pre_ping: bool = True,
) -> AsyncEngine:
    """An asyncpg engine for the app role (subject to row-level security).

    ``pre_ping`` costs a round trip per checkout; a worker that retries on connection
    errors anyway can do without it (the pool drops connections that fail)."""
    return _create_async_engine(
        async_database_url(url or settings.database_url),
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        # Keep the server from holding a transaction open forever if a client stalls.
        connect_args={"server_settings": {"idle_in_transaction_session_timeout": "60000"}},
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

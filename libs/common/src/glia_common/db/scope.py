"""The user-scoped transaction: the one way application code reaches user rows.

Row-level security policies compare ``user_id`` with the transaction setting
``glia.user_id``. It is set with ``set_config(..., true)`` (transaction-local), so
it never leaks to the next user of a pooled connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

# Where a hot path takes its driver connections: a plain asyncpg pool, or an engine's.
Database: TypeAlias = AsyncEngine | asyncpg.Pool

# What a connection that lost its server (a restart, a cut, an administrator's
# termination) raises on the driver: work on it can be retried on another connection.
CONNECTION_ERRORS = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and a connection already gone
    asyncpg.OperatorInterventionError,  # class 57: shutdown, terminated, starting up
    asyncpg.InterfaceError,  # the driver's own "connection is closed"
    OSError,
    TimeoutError,
)


async def set_user_scope(session: AsyncSession, user_id: str) -> None:
    await session.execute(select(func.set_config("glia.user_id", user_id, True)))


@asynccontextmanager
async def user_transaction(
    sessionmaker: async_sessionmaker[AsyncSession], user_id: str, *, read_only: bool = False
) -> AsyncIterator[AsyncSession]:
    """One transaction as ``user_id``: commits on success, rolls back on error."""
    async with sessionmaker() as session, session.begin():
        if read_only:
            await session.execute(
                select(
                    func.set_config("transaction_read_only", "on", True),
                    func.set_config("glia.user_id", user_id, True),
                )
            )
        else:
            await set_user_scope(session, user_id)
        yield session


@asynccontextmanager
async def system_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A transaction with no user scope: sees no user rows; for the narrow
    SECURITY DEFINER functions that serve cross-user work (outbox relay, sweepers)."""
    async with sessionmaker() as session, session.begin():
        yield session


@asynccontextmanager
async def user_connection(
    database: Database, user_id: str, *, read_only: bool = False, first: str = ""
) -> AsyncIterator[asyncpg.Connection]:
    """One transaction as ``user_id`` on a pooled asyncpg connection - from an engine's
    pool or a plain driver pool - for the hot paths that skip the ORM: commits on
    success, rolls back on error. ``first``: as for ``begin_as``.

    Instead of pinging every connection it takes from the pool, it finds a dead one when
    the transaction begins - before any work - and takes another."""
    begin = begin_as(user_id, read_only=read_only, first=first)
    for attempt in (1, 2):
        async with _checkout(database) as (conn, discard):
            try:
                await begin_transaction(conn, begin)
            except CONNECTION_ERRORS:
                # The server went away: so did every pooled connection. Start afresh.
                await discard()
                if attempt == 2:
                    raise
                continue
            async with open_transaction(conn):
                yield conn
            return


async def begin_transaction(
    conn: asyncpg.Connection, begin: str, *, command_timeout_s: float | None = None
) -> None:
    """Run ``begin`` (from ``begin_as``); when it fails, nothing of it stays open."""
    try:
        await conn.execute(begin, timeout=command_timeout_s)
    except BaseException:
        await _roll_back_or_drop(conn)
        raise


@asynccontextmanager
async def open_transaction(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """The rest of a transaction ``begin_transaction`` began: commits on success, rolls
    back on error; a connection left inside it is closed, never pooled again."""
    try:
        yield
    except BaseException:
        await _roll_back_or_drop(conn)
        raise
    try:
        await conn.execute("COMMIT")
    except BaseException:
        if not conn.is_closed() and conn.is_in_transaction():
            conn.terminate()
        raise


def begin_as(user_id: str, *, read_only: bool = False, first: str = "") -> str:
    """The transaction's start and its user scope in one round trip (a quarter of a card
    read's): statements in one simple query, so the user id is a literal. ``first``
    (statements of the caller's, trusted, values quoted with ``sql_literal``) runs right
    after BEGIN. Every connection runs with standard_conforming_strings on
    (``SERVER_SETTINGS``), where doubling the quote is the whole of quoting. NUL, which no
    literal can hold, is refused (the API refuses such ids long before: they are 401s)."""
    # A reader sees one snapshot: a page and its freshness agree even when the cards
    # are replaced between its statements.
    mode = " ISOLATION LEVEL REPEATABLE READ READ ONLY" if read_only else ""
    return f"BEGIN{mode}; {first}SELECT set_config('glia.user_id', {sql_literal(user_id)}, true)"


def sql_literal(value: str) -> str:
    """``value`` as a string literal for a simple query (``begin_as``): with
    standard_conforming_strings on, doubling the quote is the whole of quoting. NUL,
    which no literal can hold, is refused."""
    if "\x00" in value:
        raise ValueError("a string literal cannot contain NUL")
    return "'" + value.replace("'", "''") + "'"


async def _roll_back_or_drop(conn: asyncpg.Connection) -> None:
    """Roll back; a connection whose rollback did not happen (cancelled, or failed) is
    closed, never pooled again: its open transaction would still carry this user's
    scope. The next checkout then finds it dead and replaces it."""
    try:
        if conn.is_in_transaction():
            await conn.execute("ROLLBACK")
    except BaseException as exc:
        conn.terminate()
        if not isinstance(exc, Exception):
            raise


@asynccontextmanager
async def _checkout(
    database: Database,
) -> AsyncIterator[tuple[asyncpg.Connection, Callable[[], Awaitable[None]]]]:
    """A pooled driver connection, and how to drop the whole pool's connections."""
    if isinstance(database, asyncpg.Pool):
        async with database.acquire() as conn:
            yield conn, database.expire_connections
        return
    async with database.connect() as pooled:
        raw = await pooled.get_raw_connection()

        async def discard() -> None:
            await pooled.invalidate()
            await database.dispose(close=False)

        yield raw.driver_connection, discard

"""The driver-level user transaction: scoped, committed, rolled back, and never pooling
a connection whose transaction may still be open."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from glia_common.db import create_driver_pool, create_engine, user_connection

pytestmark = pytest.mark.integration


@pytest.fixture(params=["engine", "driver pool"])
async def database(request: pytest.FixtureRequest, settings: Any) -> Any:
    if request.param == "engine":
        engine = create_engine(settings, pool_size=1)
        yield engine
        await engine.dispose()
    else:
        pool = await create_driver_pool(settings.model_copy(update={"database_pool_size": 1}))
        yield pool
        await pool.close()


async def scope_outside(database: Any) -> str | None:
    """What a later user of the (single) pooled connection sees outside any transaction."""
    async with user_connection(database, "probe") as conn:
        await conn.execute("COMMIT; BEGIN")  # leave our own scope, stay in a transaction
        value: str | None = await conn.fetchval("SELECT current_setting('glia.user_id', true)")
    return value or None


async def test_commits_as_the_user(database: Any, user: str) -> None:
    cid = uuid.uuid4()
    async with user_connection(database, user) as conn:
        assert await conn.fetchval("SELECT current_setting('glia.user_id')") == user
        await conn.execute(
            "INSERT INTO conversations (id, user_id, title) VALUES ($1, $2, 'x')", cid, user
        )
    async with user_connection(database, user, read_only=True) as conn:
        assert await conn.fetchval("SELECT count(*) FROM conversations WHERE id = $1", cid) == 1


async def test_an_error_rolls_back(database: Any, user: str) -> None:
    cid = uuid.uuid4()
    with pytest.raises(RuntimeError):
        async with user_connection(database, user) as conn:
            await conn.execute(
                "INSERT INTO conversations (id, user_id, title) VALUES ($1, $2, 'x')", cid, user
            )
            raise RuntimeError("boom")
    async with user_connection(database, user) as conn:
        assert await conn.fetchval("SELECT count(*) FROM conversations WHERE id = $1", cid) == 0
    assert await scope_outside(database) is None


async def test_a_rollback_that_did_not_happen_drops_the_connection(
    database: Any, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while rolling back: the connection (its transaction still open, carrying
    this user's scope) is closed, and the next user gets a fresh one."""
    pids: list[int] = []

    execute = asyncpg.Connection.execute

    async def cancelled_rollback(self: Any, query: str, *args: Any, **kw: Any) -> Any:
        if query == "ROLLBACK":
            raise asyncio.CancelledError
        return await execute(self, query, *args, **kw)

    with pytest.raises(asyncio.CancelledError):
        async with user_connection(database, user) as conn:
            pids.append(await conn.fetchval("SELECT pg_backend_pid()"))
            monkeypatch.setattr(asyncpg.Connection, "execute", cancelled_rollback)
            raise RuntimeError("the request failed")
    monkeypatch.undo()
    async with user_connection(database, "someone-else") as conn:
        # The pool holds one connection: a new server session means the old one is gone.
        assert await conn.fetchval("SELECT pg_backend_pid()") != pids[0]
        assert await conn.fetchval("SELECT current_setting('glia.user_id')") == "someone-else"


async def test_a_reader_sees_one_snapshot(database: Any, user: str, admin_db: Any) -> None:
    """A page and its freshness come from the same moment, even if a writer commits
    between the reader's statements."""
    async with user_connection(database, user, read_only=True) as reader:
        before = await reader.fetchval("SELECT count(*) FROM conversations")
        await admin_db.execute(
            "INSERT INTO conversations (id, user_id, title) VALUES ($1, $2, 'late')",
            uuid.uuid4(),
            user,
        )
        assert await reader.fetchval("SELECT count(*) FROM conversations") == before
    async with user_connection(database, user, read_only=True) as reader:
        assert await reader.fetchval("SELECT count(*) FROM conversations") == before + 1


@pytest.mark.parametrize(
    "hostile",
    ["o'brien", "x'); SELECT set_config('glia.user_id', 'victim', true); --", "back\\slash'"],
)
async def test_a_user_id_is_a_literal_whatever_it_holds(database: Any, hostile: str) -> None:
    # The scope is set in the same round trip as BEGIN, with the id quoted as a literal.
    async with user_connection(database, hostile, read_only=True) as conn:
        assert await conn.fetchval("SELECT current_setting('glia.user_id')") == hostile
        assert await conn.fetchval("SHOW transaction_read_only") == "on"
        assert await conn.fetchval("SHOW transaction_isolation") == "repeatable read"
    assert await scope_outside(database) is None


async def test_a_user_id_with_nul_is_refused_before_any_transaction(database: Any) -> None:
    with pytest.raises(ValueError, match="NUL"):
        async with user_connection(database, "nul\x00user"):
            pass
    assert await scope_outside(database) is None

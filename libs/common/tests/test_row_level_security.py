"""Row-level security in PostgreSQL itself, as the app role."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from glia_common.db import create_engine, create_sessionmaker, system_transaction, user_transaction
from glia_common.models import USER_TABLES, Conversation
from glia_e2e.seeding import seed_conversation

pytestmark = pytest.mark.integration


async def seed(settings: Any, user_id: str) -> uuid.UUID:
    cid, _ = await seed_conversation(settings.database_url, user_id, ["hi"], title="secret")
    return cid


async def visible(session: Any, table: str, conversation_id: uuid.UUID) -> int:
    column = "id" if table == "conversations" else "conversation_id"
    query = text(f"SELECT count(*) FROM {table} WHERE {column} = :c").bindparams(c=conversation_id)
    return int((await session.execute(query)).scalar_one())


async def test_app_role_without_user_scope_sees_no_rows(settings: Any, user: str) -> None:
    engine = create_engine(settings)
    try:
        sm = create_sessionmaker(engine)
        await seed(settings, user)
        async with system_transaction(sm) as session:
            for table in USER_TABLES:
                count = (await session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
                assert count == 0, table
    finally:
        await engine.dispose()


async def test_user_scope_is_transaction_local_on_a_reused_connection(
    settings: Any, user: str
) -> None:
    # One pooled connection: every transaction below reuses it.
    engine = create_engine(settings, pool_size=1)
    engine.pool._max_overflow = 0  # type: ignore[attr-defined]
    try:
        sm = create_sessionmaker(engine)
        alice, bob = user, user + "-b"
        alice_conv = await seed(settings, alice)
        async with user_transaction(sm, bob) as session:
            assert await visible(session, "conversations", alice_conv) == 0
            assert (await session.execute(text("SELECT count(*) FROM conversations"))).scalar() == 0
            assert await visible(session, "messages", alice_conv) == 0
        # After Bob's transaction, the connection carries no user at all.
        async with system_transaction(sm) as session:
            setting = (
                await session.execute(text("SELECT current_setting('glia.user_id', true)"))
            ).scalar_one()
            assert setting in (None, "")
            assert (
                await session.execute(text("SELECT count(*) FROM conversations"))
            ).scalar_one() == 0
        async with user_transaction(sm, alice) as session:
            assert await visible(session, "conversations", alice_conv) == 1
            assert await visible(session, "messages", alice_conv) == 1
    finally:
        await engine.dispose()


async def test_app_role_cannot_write_rows_for_another_user(settings: Any, user: str) -> None:
    engine = create_engine(settings)
    try:
        sm = create_sessionmaker(engine)
        with pytest.raises(Exception, match="row-level security"):
            async with user_transaction(sm, user) as session:
                session.add(Conversation(id=uuid.uuid4(), user_id=user + "-victim", title="x"))
                await session.flush()
    finally:
        await engine.dispose()


async def test_app_role_owns_nothing_and_cannot_bypass(
    infra: Any, admin_db: asyncpg.Connection
) -> None:
    role = await admin_db.fetchrow(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'glia_app'"
    )
    assert role is not None and not role["rolsuper"] and not role["rolbypassrls"]
    owned = await admin_db.fetchval(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = 'glia_app'"
    )
    assert owned == 0
    rows = await admin_db.fetch(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
        "WHERE relname = ANY($1::text[]) AND relkind = 'r'",
        list(USER_TABLES),
    )
    assert {r["relname"] for r in rows} == set(USER_TABLES)
    assert all(r["relrowsecurity"] and r["relforcerowsecurity"] for r in rows)


async def test_app_role_cannot_disable_row_level_security(infra: Any) -> None:
    conn = await asyncpg.connect(infra.app_url)
    try:
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute("ALTER TABLE conversations DISABLE ROW LEVEL SECURITY")
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute("SET row_security = off; SELECT * FROM conversations")
    finally:
        await conn.close()

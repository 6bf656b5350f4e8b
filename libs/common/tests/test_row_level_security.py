"""Row-level security in PostgreSQL itself, as the app role."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from glia_common.db import create_engine, create_sessionmaker, system_transaction, user_transaction
from glia_common.models import USER_TABLES
from glia_common.repositories import ConversationRepository, MessageRepository

pytestmark = pytest.mark.integration


async def seed(sessionmaker: Any, user_id: str) -> uuid.UUID:
    async with user_transaction(sessionmaker, user_id) as session:
        conv = await ConversationRepository.from_session(session).create(user_id, "secret")
        await MessageRepository.from_session(session).add(
            conversation_id=conv.id, user_id=user_id, role="user", content="hi", status="complete"
        )
        return conv.id


async def test_app_role_without_user_scope_sees_no_rows(settings: Any, user: str) -> None:
    engine = create_engine(settings)
    try:
        sm = create_sessionmaker(engine)
        await seed(sm, user)
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
        alice_conv = await seed(sm, alice)
        async with user_transaction(sm, bob) as session:
            repo = ConversationRepository.from_session(session)
            assert await repo.get(alice_conv) is None
            assert (await repo.list_recent(100, None)).items == []
            assert await MessageRepository.from_session(session).for_conversation(alice_conv) == []
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
            assert await ConversationRepository.from_session(session).get(alice_conv) is not None
    finally:
        await engine.dispose()


async def test_app_role_cannot_write_rows_for_another_user(settings: Any, user: str) -> None:
    engine = create_engine(settings)
    try:
        sm = create_sessionmaker(engine)
        with pytest.raises(Exception, match="row-level security"):
            async with user_transaction(sm, user) as session:
                await ConversationRepository.from_session(session).create(user + "-victim", "x")
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

"""glia-migrate creates what is missing and is idempotent."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from glia_common.cli.migrate import migrate
from glia_common.settings import MigrateSettings

pytestmark = pytest.mark.integration

SCHEMA_QUERY = """
SELECT string_agg(x, E'\n' ORDER BY x) FROM (
  SELECT table_name || '.' || column_name || ':' || data_type AS x
    FROM information_schema.columns WHERE table_schema = 'public'
  UNION ALL SELECT 'policy:' || tablename || '.' || policyname FROM pg_policies
  UNION ALL SELECT 'index:' || indexname FROM pg_indexes WHERE schemaname = 'public'
  UNION ALL SELECT 'grant:' || table_name || ':' || privilege_type
    FROM information_schema.role_table_grants WHERE grantee = 'glia_app'
) s
"""


async def test_migrate_creates_database_and_is_idempotent(infra: Any) -> None:
    admin_base = infra.admin_url.rsplit("/", 1)[0] + "/postgres"
    parts = urlsplit(infra.admin_url)
    database = f"glia_migrate_{secrets.token_hex(4)}"
    app_url = f"postgresql://glia_app:glia_app@{parts.hostname}:{parts.port or 5432}/{database}"
    settings = MigrateSettings(_env_file=None, database_url=app_url, database_admin_url=admin_base)  # type: ignore[call-arg]
    try:
        await asyncio.to_thread(migrate, settings)
        conn = await asyncpg.connect(app_url)  # the app role can log in
        await conn.close()
        admin = await asyncpg.connect(admin_base.rsplit("/", 1)[0] + f"/{database}")
        try:
            before = await admin.fetchval(SCHEMA_QUERY)
            version = await admin.fetchval("SELECT version_num FROM alembic_version")
            await asyncio.to_thread(migrate, settings)
            assert await admin.fetchval(SCHEMA_QUERY) == before
            assert await admin.fetchval("SELECT version_num FROM alembic_version") == version
        finally:
            await admin.close()
    finally:
        admin = await asyncpg.connect(admin_base)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def test_models_and_migrations_agree(infra: Any) -> None:
    """Autogenerate finds nothing to do: the ORM models and the migrations describe one schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    from glia_common.models import Base
    from glia_common.settings import async_database_url

    engine = create_async_engine(async_database_url(infra.admin_url))
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []

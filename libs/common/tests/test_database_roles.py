"""Least-privilege database roles: PUBLIC executes no SECURITY DEFINER function, each
cross-user function is granted only to the role that calls it, glia-migrate provisions
several roles idempotently, and the start-up guard refuses roles that row-level
security does not hold."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from glia_common.cli.migrate import OPERATOR_FUNCTIONS, WORKER_FUNCTIONS, migrate
from glia_common.db.roles import UnsafeDatabaseRole, check_role, refuse_privileged_roles
from glia_common.settings import MigrateSettings

pytestmark = pytest.mark.integration

SECURITY_DEFINER = (
    "SELECT p.oid FROM pg_proc p WHERE p.prosecdef AND p.pronamespace = 'public'::regnamespace"
)
# Harmless calls of every worker and operator function (on an empty schema).
WORKER_CALLS = (
    "SELECT * FROM glia_outbox_claim(10)",
    "SELECT glia_outbox_mark_sent('{}'::bigint[])",
    "SELECT glia_outbox_mark_failed('{}'::bigint[], 'x')",
    "SELECT glia_outbox_purge('1 day')",
    "SELECT * FROM glia_outbox_stats()",
    "SELECT glia_abandon_stale_turns('1 day', 'extraction.requested')",
    "SELECT * FROM glia_claim_stale_conversations('1 day', 10)",
)
OPERATOR_CALLS = (
    "SELECT glia_conversation_owner(gen_random_uuid())",
    "SELECT * FROM glia_conversations_of_runs('r', 't')",
    "SELECT * FROM glia_conversations_for_reextract(NULL)",
)


@dataclass(frozen=True)
class RolesDb:
    """A database of its own whose app, worker and operator roles are three roles."""

    server: str  # admin URL of the server (its postgres database)
    admin_url: str  # admin URL of this database
    app_url: str
    worker_url: str
    operator_url: str
    prefix: str  # of every role made for this module

    def url(self, role: str, password: str = "pw") -> str:
        parts = urlsplit(self.admin_url)
        return f"postgresql://{role}:{password}@{parts.hostname}:{parts.port or 5432}{parts.path}"

    def settings(self, **overrides: str) -> MigrateSettings:
        values = {
            "database_url": self.app_url,
            "database_worker_url": self.worker_url,
            "database_operator_url": self.operator_url,
            "database_admin_url": self.server,
        } | overrides
        return MigrateSettings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
async def roles_db(infra: Any) -> AsyncIterator[RolesDb]:
    server = infra.admin_url.rsplit("/", 1)[0] + "/postgres"
    tag = secrets.token_hex(3)
    database = f"glia_roles_{tag}"
    prefix = f"glia_t{tag}_"
    parts = urlsplit(server)
    base = f"{parts.hostname}:{parts.port or 5432}/{database}"
    db = RolesDb(
        server=server,
        admin_url=server.rsplit("/", 1)[0] + f"/{database}",
        app_url=f"postgresql://{prefix}app:app-pw@{base}",
        worker_url=f"postgresql://{prefix}worker:worker-pw@{base}",
        operator_url=f"postgresql://{prefix}operator:operator-pw@{base}",
        prefix=prefix,
    )
    await asyncio.to_thread(migrate, db.settings())
    try:
        yield db
    finally:
        admin = await asyncpg.connect(server)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for name in await admin.fetch(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE $1", prefix + "%"
            ):
                await admin.execute(f'DROP ROLE "{name["rolname"]}"')
        finally:
            await admin.close()


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url)


async def refused(conn: asyncpg.Connection, statement: str) -> bool:
    try:
        async with conn.transaction():
            await conn.execute(statement)
    except asyncpg.InsufficientPrivilegeError:
        return True
    return False


async def test_public_cannot_execute_any_security_definer_function(roles_db: RolesDb) -> None:
    admin = await connect(roles_db.admin_url)
    try:
        nobody = roles_db.prefix + "nobody"
        await admin.execute(f"CREATE ROLE {nobody} NOLOGIN")
        functions = await admin.fetch(SECURITY_DEFINER)
        assert len(functions) >= len(WORKER_FUNCTIONS) + len(OPERATOR_FUNCTIONS)
        executable = await admin.fetch(
            f"SELECT p.oid::regprocedure::text FROM ({SECURITY_DEFINER}) p "
            "WHERE has_function_privilege($1, p.oid, 'EXECUTE')",
            nobody,
        )
        assert executable == []
        # Nor a function the migrating role creates later (default privileges).
        probe = admin.transaction()
        await probe.start()
        try:
            await admin.execute(
                "CREATE FUNCTION glia_probe() RETURNS int LANGUAGE sql SECURITY DEFINER "
                "AS 'SELECT 1'"
            )
            assert not await admin.fetchval(
                "SELECT has_function_privilege($1, 'glia_probe()', 'EXECUTE')", nobody
            )
        finally:
            await probe.rollback()
    finally:
        await admin.close()


async def test_every_security_definer_function_is_granted_to_its_callers(
    roles_db: RolesDb,
) -> None:
    """A new cross-user function must be listed in glia-migrate's grants, or nobody but
    its owner could call it."""
    admin = await connect(roles_db.admin_url)
    try:
        defined = {r["oid"] for r in await admin.fetch(SECURITY_DEFINER)}
        listed = {
            await admin.fetchval("SELECT to_regprocedure($1)::oid", f)
            for f in WORKER_FUNCTIONS + OPERATOR_FUNCTIONS
        }
        assert defined == listed
    finally:
        await admin.close()


async def test_app_role_calls_no_cross_user_function(roles_db: RolesDb) -> None:
    conn = await connect(roles_db.app_url)
    try:
        for statement in WORKER_CALLS + OPERATOR_CALLS:
            assert await refused(conn, statement), statement
        # Its user-scoped work is untouched.
        async with conn.transaction():
            await conn.execute("SELECT set_config('glia.user_id', 'u1', true)")
            await conn.execute(
                "INSERT INTO conversations (id, user_id) VALUES (gen_random_uuid(), 'u1')"
            )
            assert await conn.fetchval("SELECT count(*) FROM conversations") == 1
            await conn.execute("DELETE FROM conversations")
    finally:
        await conn.close()


async def test_worker_role_calls_its_functions_and_reads_no_table(roles_db: RolesDb) -> None:
    conn = await connect(roles_db.worker_url)
    try:
        async with conn.transaction():
            for statement in WORKER_CALLS:
                await conn.execute(statement)
        for statement in OPERATOR_CALLS:
            assert await refused(conn, statement), statement
        for table in ("conversations", "messages", "outbox", "extraction_runs"):
            assert await refused(conn, f"SELECT 1 FROM {table}"), table
    finally:
        await conn.close()


async def test_operator_role_looks_up_and_reads_runs_only(roles_db: RolesDb) -> None:
    conn = await connect(roles_db.operator_url)
    try:
        async with conn.transaction():
            for statement in OPERATOR_CALLS:
                await conn.execute(statement)
            await conn.execute("SELECT set_config('glia.user_id', 'u1', true)")
            assert await conn.fetchval("SELECT count(*) FROM extraction_runs") == 0
        for statement in WORKER_CALLS:
            assert await refused(conn, statement), statement
        assert await refused(conn, "SELECT 1 FROM conversations")
        assert await refused(conn, "DELETE FROM extraction_runs")
    finally:
        await conn.close()


GRANTS = """
SELECT string_agg(x, E'\n' ORDER BY x) FROM (
  SELECT 'table:' || grantee || ':' || table_name || ':' || privilege_type AS x
    FROM information_schema.role_table_grants WHERE grantee LIKE $1
  UNION ALL
  SELECT 'function:' || r.rolname || ':' || p.oid::regprocedure::text
    FROM pg_proc p CROSS JOIN pg_roles r
   WHERE p.pronamespace = 'public'::regnamespace AND r.rolname LIKE $1
     AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
  UNION ALL
  SELECT 'role:' || rolname || ':' || rolsuper || rolbypassrls || rolcreatedb || rolcreaterole
         || rolcanlogin
    FROM pg_roles WHERE rolname LIKE $1
) s
"""


async def test_migrate_is_idempotent_with_several_roles_and_follows_changes(
    roles_db: RolesDb,
) -> None:
    admin = await connect(roles_db.admin_url)
    pattern = roles_db.prefix + "%"
    app = roles_db.prefix + "app"
    try:
        separate = await admin.fetchval(GRANTS, pattern)
        await asyncio.to_thread(migrate, roles_db.settings())
        assert await admin.fetchval(GRANTS, pattern) == separate
        # Shown from the start: three roles, none a superuser, the app role's tables.
        assert f"role:{roles_db.prefix}worker:falsefalsefalsefalsetrue" in separate
        assert f"table:{app}:cards:INSERT" in separate
        assert f"table:{roles_db.prefix}operator:extraction_runs:SELECT" in separate
        assert "alembic_version" not in separate

        # One URL for every use: its role gets what all of them need ...
        one = roles_db.settings(database_worker_url="", database_operator_url="")
        await asyncio.to_thread(migrate, one)
        for function in WORKER_FUNCTIONS + OPERATOR_FUNCTIONS:
            assert await admin.fetchval(
                "SELECT has_function_privilege($1, $2, 'EXECUTE')", app, function
            ), function
        # ... and separate roles again take it back.
        await asyncio.to_thread(migrate, roles_db.settings())
        assert await admin.fetchval(GRANTS, pattern) == separate
    finally:
        await admin.close()


async def test_migrate_refuses_roles_it_must_not_make(roles_db: RolesDb) -> None:
    other_db = roles_db.worker_url.rsplit("/", 1)[0] + "/elsewhere"
    with pytest.raises(ValueError, match="GLIA_DATABASE_WORKER_URL must name the database"):
        await asyncio.to_thread(migrate, roles_db.settings(database_worker_url=other_db))
    # Never demote the admin role into a service role.
    admin_role = urlsplit(roles_db.server).username or "postgres"
    as_admin = roles_db.url(admin_role)
    with pytest.raises(ValueError, match="the admin role or a superuser"):
        await asyncio.to_thread(migrate, roles_db.settings(database_operator_url=as_admin))
    admin = await connect(roles_db.admin_url)
    try:
        assert await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    finally:
        await admin.close()
    with pytest.raises(ValueError, match="another password"):
        await asyncio.to_thread(
            migrate,
            roles_db.settings(database_worker_url=roles_db.url(roles_db.prefix + "app", "other")),
        )


async def test_start_up_check_accepts_the_service_roles(roles_db: RolesDb) -> None:
    for url in (roles_db.app_url, roles_db.worker_url, roles_db.operator_url):
        role, problems = await check_role(url)
        assert role.startswith(roles_db.prefix) and problems == []
    await refuse_privileged_roles(
        "test",
        {"GLIA_DATABASE_URL": roles_db.app_url, "GLIA_DATABASE_WORKER_URL": roles_db.worker_url},
    )


async def test_start_up_check_refuses_superusers_bypassrls_and_owners(roles_db: RolesDb) -> None:
    admin_role = urlsplit(roles_db.server).username or "postgres"
    with pytest.raises(UnsafeDatabaseRole) as refusal:
        await refuse_privileged_roles(
            "glia-test",
            {"GLIA_DATABASE_URL": roles_db.app_url, "GLIA_DATABASE_WORKER_URL": roles_db.admin_url},
        )
    message = str(refusal.value)
    assert f"glia-test refuses to run as database role '{admin_role}'" in message
    assert "(GLIA_DATABASE_WORKER_URL)" in message and "is a superuser" in message

    p = roles_db.prefix
    admin = await connect(roles_db.admin_url)
    try:
        await admin.execute(f"CREATE ROLE {p}bypass LOGIN PASSWORD 'pw' BYPASSRLS")
        await admin.execute(f"CREATE ROLE {p}owner LOGIN PASSWORD 'pw'")
        await admin.execute(f"CREATE ROLE {p}member LOGIN PASSWORD 'pw' IN ROLE {p}owner")
        await admin.execute(f"ALTER TABLE cards OWNER TO {p}owner")
        try:
            assert (await check_role(roles_db.url(p + "bypass")))[1] == ["has BYPASSRLS"]
            for role in ("owner", "member"):  # the owner, or a role that can become it
                _, problems = await check_role(roles_db.url(p + role))
                assert problems == ["owns tables of the schema (cards)"], role
        finally:
            await admin.execute(f"ALTER TABLE cards OWNER TO {admin_role}")
            await admin.execute(f"DROP OWNED BY {p}bypass, {p}owner, {p}member")
    finally:
        await admin.close()


async def test_start_up_check_waits_for_an_unreachable_server_then_fails() -> None:
    url = "postgresql://nobody:pw@127.0.0.1:1/none"
    with pytest.raises(OSError):
        await refuse_privileged_roles("test", {"GLIA_DATABASE_URL": url}, wait_s=1.0)

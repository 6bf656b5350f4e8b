"""glia-migrate: create the database and the roles if missing, bring the schema to head,
then grant each role exactly what it needs.

Idempotent: running it twice changes nothing. Connects with GLIA_DATABASE_ADMIN_URL. The
roles, their passwords and the database come from the URLs the processes connect with:
GLIA_DATABASE_URL (the app role), GLIA_DATABASE_WORKER_URL (background workers) and
GLIA_DATABASE_OPERATOR_URL (glia-admin). The last two default to the first, whose role
then gets what they need as well. deploy/README.md, "Database roles", tells who may do what.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
from alembic import command
from alembic.config import Config

from glia_common.settings import (
    MigrateSettings,
    async_database_url,
    driver_database_url,
    with_database,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(admin_url_for_db: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", async_database_url(admin_url_for_db).replace("%", "%%"))
    return cfg


# The SECURITY DEFINER functions - the only cross-user paths - and who may call them.
# Nobody else can: the function_privileges migration took EXECUTE away from PUBLIC. A
# new such function must be added here (a test checks that every one is).
WORKER_FUNCTIONS = (
    # chat-api's outbox relay
    "glia_outbox_claim(integer)",
    "glia_outbox_mark_sent(bigint[])",
    "glia_outbox_mark_failed(bigint[], text)",
    "glia_outbox_purge(interval)",
    "glia_outbox_stats()",
    # chat-api's stale-turn sweeper
    "glia_abandon_stale_turns(interval, text)",
    # the extractor's reconciler
    "glia_claim_stale_conversations(interval, integer)",
)
OPERATOR_FUNCTIONS = (
    # glia-admin's lookups of conversations and their owners
    "glia_conversation_owner(uuid)",
    "glia_conversations_of_runs(text, text)",
    "glia_conversations_for_reextract(text)",
)
# glia-admin reads the runs it found under each owner's scope (row-level security).
OPERATOR_TABLES = ("extraction_runs",)

USES = (
    ("app", "GLIA_DATABASE_URL"),
    ("worker", "GLIA_DATABASE_WORKER_URL"),
    ("operator", "GLIA_DATABASE_OPERATOR_URL"),
)


@dataclass
class Role:
    name: str
    password: str | None
    uses: set[str]  # "app", "worker", "operator"


def database_name(settings: MigrateSettings) -> str:
    return urlsplit(settings.database_url).path.lstrip("/") or "glia"


def roles_of(settings: MigrateSettings) -> list[Role]:
    """The roles the URLs name, each with every use it is named for."""
    urls = {
        "app": settings.database_url,
        "worker": settings.worker_database_url,
        "operator": settings.operator_database_url,
    }
    database = database_name(settings)
    roles: dict[str, Role] = {}
    for use, variable in USES:
        parts = urlsplit(urls[use])
        if (parts.path.lstrip("/") or "glia") != database:
            raise ValueError(f"{variable} must name the database of GLIA_DATABASE_URL ({database})")
        name = unquote(parts.username or "glia_app")
        password = unquote(parts.password) if parts.password else None
        role = roles.setdefault(name, Role(name, password, set()))
        if password is not None and role.password not in (None, password):
            raise ValueError(f"{variable} gives role {name!r} another password")
        role.password = role.password or password
        role.uses.add(use)
    return list(roles.values())


async def ensure_database_and_roles(settings: MigrateSettings, roles: list[Role]) -> None:
    admin = await asyncpg.connect(driver_database_url(settings.database_admin_url))
    try:
        me = await admin.fetchval("SELECT current_user")
        for role in roles:
            superuser = await admin.fetchval(
                "SELECT rolsuper FROM pg_roles WHERE rolname = $1", role.name
            )
            if role.name == me or superuser:
                # Never demote the admin (or any superuser) into a service role.
                raise ValueError(
                    f"role {role.name!r} is the admin role or a superuser: "
                    "the services need roles of their own"
                )
            quoted_role = await admin.fetchval("SELECT quote_ident($1)", role.name)
            login = "LOGIN"
            if role.password is not None:
                quoted_pw = await admin.fetchval("SELECT quote_literal($1)", role.password)
                login += f" PASSWORD {quoted_pw}"
            verb = "CREATE" if superuser is None else "ALTER"
            # Service roles own nothing and can never bypass row-level security.
            await admin.execute(
                f"{verb} ROLE {quoted_role} {login} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
            )
        database = database_name(settings)
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            quoted_db = await admin.fetchval("SELECT quote_ident($1)", database)
            await admin.execute(f"CREATE DATABASE {quoted_db}")
    finally:
        await admin.close()


def grant_statements(role: str, database: str, uses: set[str]) -> list[str]:
    """Everything ``role`` may do in ``database``, from nothing (names already quoted).
    Functions the schema does not have (yet) are skipped by the caller."""
    statements = [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}",
        f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM {role}",
        f"GRANT CONNECT ON DATABASE {database} TO {role}",
        f"GRANT USAGE ON SCHEMA public TO {role}",
    ]
    if "app" in uses:  # user-scoped reads and writes, under row-level security
        statements += [
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
            f"REVOKE ALL ON alembic_version FROM {role}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
        ]
    elif "operator" in uses:
        statements += [f"GRANT SELECT ON {t} TO {role}" for t in OPERATOR_TABLES]
    return statements


def functions_for(uses: set[str]) -> list[str]:
    return [
        *(WORKER_FUNCTIONS if "worker" in uses else ()),
        *(OPERATOR_FUNCTIONS if "operator" in uses else ()),
    ]


async def grant_roles(settings: MigrateSettings, roles: list[Role]) -> None:
    """Grant every role exactly its uses, in one transaction: a running service never
    sees a privilege missing in between."""
    database = database_name(settings)
    conn = await asyncpg.connect(
        driver_database_url(with_database(settings.database_admin_url, database))
    )
    try:
        async with conn.transaction():
            await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            d = await conn.fetchval("SELECT quote_ident($1)", database)
            for role in roles:
                r = await conn.fetchval("SELECT quote_ident($1)", role.name)
                for statement in grant_statements(r, d, role.uses):
                    await conn.execute(statement)
                for function in functions_for(role.uses):
                    if await conn.fetchval("SELECT to_regprocedure($1)", function) is not None:
                        await conn.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {r}")
    finally:
        await conn.close()


def migrate(settings: MigrateSettings, revision: str = "head") -> None:
    roles = roles_of(settings)
    asyncio.run(ensure_database_and_roles(settings, roles))
    admin_url = with_database(settings.database_admin_url, database_name(settings))
    command.upgrade(alembic_config(admin_url), revision)
    asyncio.run(grant_roles(settings, roles))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="glia-migrate", description=__doc__)
    parser.add_argument("--revision", default="head", help="target revision (default: head)")
    args = parser.parse_args(argv)
    try:
        migrate(MigrateSettings(), args.revision)
    except (OSError, ValueError, asyncpg.PostgresError) as exc:
        print(f"glia-migrate: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(f"glia-migrate: database is at {args.revision}")


if __name__ == "__main__":
    main()

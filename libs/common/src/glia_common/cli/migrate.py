"""glia-migrate: create the database and the app role if missing, then upgrade to head.

Idempotent: running it twice changes nothing. Connects with GLIA_DATABASE_ADMIN_URL;
the app role, its password and the database name come from GLIA_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
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


async def ensure_database_and_role(settings: MigrateSettings) -> None:
    app = urlsplit(settings.database_url)
    role = unquote(app.username or "glia_app")
    password = unquote(app.password) if app.password else None
    database = app.path.lstrip("/") or "glia"

    admin = await asyncpg.connect(driver_database_url(settings.database_admin_url))
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        quoted_role = await admin.fetchval("SELECT quote_ident($1)", role)
        login = "LOGIN"
        if password is not None:
            quoted_pw = await admin.fetchval("SELECT quote_literal($1)", password)
            login += f" PASSWORD {quoted_pw}"
        verb = "ALTER" if exists else "CREATE"
        # The app role owns nothing and can never bypass row-level security.
        await admin.execute(
            f"{verb} ROLE {quoted_role} {login} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
        )
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            quoted_db = await admin.fetchval("SELECT quote_ident($1)", database)
            await admin.execute(f"CREATE DATABASE {quoted_db}")
    finally:
        await admin.close()


async def grant_app_role(settings: MigrateSettings) -> None:
    app = urlsplit(settings.database_url)
    role = unquote(app.username or "glia_app")
    database = app.path.lstrip("/") or "glia"
    conn = await asyncpg.connect(
        driver_database_url(with_database(settings.database_admin_url, database))
    )
    try:
        r = await conn.fetchval("SELECT quote_ident($1)", role)
        d = await conn.fetchval("SELECT quote_ident($1)", database)
        await conn.execute(f"""
            REVOKE CREATE ON SCHEMA public FROM PUBLIC;
            GRANT CONNECT ON DATABASE {d} TO {r};
            GRANT USAGE ON SCHEMA public TO {r};
            GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {r};
            REVOKE ALL ON alembic_version FROM {r};
            GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r};
            GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {r};
        """)
    finally:
        await conn.close()


def migrate(settings: MigrateSettings, revision: str = "head") -> None:
    asyncio.run(ensure_database_and_role(settings))
    database = urlsplit(settings.database_url).path.lstrip("/") or "glia"
    command.upgrade(alembic_config(with_database(settings.database_admin_url, database)), revision)
    asyncio.run(grant_app_role(settings))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="glia-migrate", description=__doc__)
    parser.add_argument("--revision", default="head", help="target revision (default: head)")
    args = parser.parse_args(argv)
    try:
        migrate(MigrateSettings(), args.revision)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"glia-migrate: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(f"glia-migrate: database is at {args.revision}")


if __name__ == "__main__":
    main()

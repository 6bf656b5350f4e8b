"""The start-up guard: a Glia process refuses to run as a database role that row-level
security does not hold.

User isolation rests on forced row-level security. It does not bind a superuser, a role
with BYPASSRLS, or a table's owner (who can switch it off). So before serving, every
service and glia-admin checks each role it connects as, in one catalog query, and stops
with a clear error when the role - or a role it is a member of, and so can become with
SET ROLE - is any of these.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import asyncpg

from glia_common.db.scope import CONNECTION_ERRORS
from glia_common.settings import driver_database_url
from glia_common.telemetry import get_logger

log = get_logger(__name__)

# pg_has_role(..., 'MEMBER') is true for the role itself, for every role it can SET ROLE
# to, and - for a superuser - for every role at all.
ROLE_CHECK = """
SELECT current_user::text AS role,
       EXISTS (SELECT 1 FROM pg_roles r
                WHERE r.rolsuper AND pg_has_role(current_user, r.oid, 'MEMBER')) AS superuser,
       EXISTS (SELECT 1 FROM pg_roles r
                WHERE r.rolbypassrls AND pg_has_role(current_user, r.oid, 'MEMBER')) AS bypassrls,
       ARRAY(SELECT c.relname::text FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
                AND pg_has_role(current_user, c.relowner, 'MEMBER')
              ORDER BY c.relname) AS owned
"""


class UnsafeDatabaseRole(RuntimeError):
    """The configured database role could read or change every user's rows."""


def role_problems(superuser: bool, bypassrls: bool, owned: list[str]) -> list[str]:
    problems = []
    if superuser:
        problems.append("is a superuser")
    if bypassrls:
        problems.append("has BYPASSRLS")
    if owned:
        shown = ", ".join(owned[:5]) + (", ..." if len(owned) > 5 else "")
        problems.append(f"owns tables of the schema ({shown})")
    return problems


async def check_role(url: str) -> tuple[str, list[str]]:
    """The role ``url`` connects as, and what makes it unsafe (empty when it is safe)."""
    conn = await asyncpg.connect(driver_database_url(url), timeout=10)
    try:
        row = await conn.fetchrow(ROLE_CHECK)
    finally:
        await conn.close()
    assert row is not None
    return row["role"], role_problems(row["superuser"], row["bypassrls"], list(row["owned"]))


async def refuse_privileged_roles(
    process: str, urls: Mapping[str, str], *, wait_s: float = 60.0
) -> None:
    """Raise ``UnsafeDatabaseRole`` unless every role in ``urls`` (setting name -> URL;
    one check per distinct URL) is subject to row-level security. A server that cannot
    be reached yet is retried for ``wait_s``, so a service may start before its
    database does."""
    checked: set[str] = set()
    for setting, url in urls.items():
        if url in checked:
            continue
        checked.add(url)
        deadline = time.monotonic() + wait_s
        delay = 0.5
        while True:
            try:
                role, problems = await check_role(url)
                break
            except CONNECTION_ERRORS as exc:  # not reachable (yet); anything else fails at once
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("database.unreachable_at_start", setting=setting, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if problems:
            what = " and ".join(
                [", ".join(problems[:-1]), problems[-1]] if problems[1:] else problems
            )
            message = (
                f"{process} refuses to run as database role {role!r} ({setting}): it {what}, "
                "so row-level security would not keep users apart. Use a role that "
                "glia-migrate creates (deploy/README.md, 'Database roles')."
            )
            log.error("database.unsafe_role", setting=setting, role=role, problems=problems)
            raise UnsafeDatabaseRole(message)

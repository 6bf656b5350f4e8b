"""no function is executable by PUBLIC: each cross-user function only by its role

PostgreSQL lets PUBLIC execute every new function. For the SECURITY DEFINER functions -
the only cross-user paths - that meant any role able to connect could claim the outbox,
settle other users' turns or look up owners. From here on EXECUTE is revoked from PUBLIC
on every SECURITY DEFINER function of the schema, and by default on every function the
migrating role creates later; glia-migrate grants each function to the role that calls
it (cli/migrate.py, FUNCTION_GRANTS). Trigger functions need no EXECUTE grant to fire.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 06:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EACH_SECURITY_DEFINER = """
    DO $$
    DECLARE f regprocedure;
    BEGIN
        FOR f IN SELECT p.oid FROM pg_proc p
                  WHERE p.prosecdef AND p.pronamespace = 'public'::regnamespace
        LOOP
            EXECUTE format('{statement}', f);
        END LOOP;
    END $$
"""


def upgrade() -> None:
    op.execute(_EACH_SECURITY_DEFINER.format(statement="REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC"))
    # Functions this role creates from now on (in this database) start without PUBLIC.
    op.execute("ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC")


def downgrade() -> None:
    op.execute("ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC")
    op.execute(_EACH_SECURITY_DEFINER.format(statement="GRANT EXECUTE ON FUNCTION %s TO PUBLIC"))

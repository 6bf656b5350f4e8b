"""Engines, sessions and the user-scoped transaction."""

from glia_common.db.engine import (
    create_driver_pool,
    create_engine,
    create_sessionmaker,
    create_worker_engine,
)
from glia_common.db.roles import UnsafeDatabaseRole, refuse_privileged_roles
from glia_common.db.scope import (
    CONNECTION_ERRORS,
    Database,
    begin_as,
    begin_transaction,
    open_transaction,
    sql_literal,
    system_transaction,
    user_connection,
    user_transaction,
)

__all__ = [
    "CONNECTION_ERRORS",
    "Database",
    "UnsafeDatabaseRole",
    "begin_as",
    "begin_transaction",
    "create_driver_pool",
    "create_engine",
    "create_sessionmaker",
    "create_worker_engine",
    "open_transaction",
    "refuse_privileged_roles",
    "sql_literal",
    "system_transaction",
    "user_connection",
    "user_transaction",
]

"""Engines, sessions and the user-scoped transaction."""

from glia_common.db.engine import create_driver_pool, create_engine, create_sessionmaker
from glia_common.db.scope import (
    CONNECTION_ERRORS,
    system_transaction,
    user_connection,
    user_transaction,
)

__all__ = [
    "CONNECTION_ERRORS",
    "create_driver_pool",
    "create_engine",
    "create_sessionmaker",
    "system_transaction",
    "user_connection",
    "user_transaction",
]

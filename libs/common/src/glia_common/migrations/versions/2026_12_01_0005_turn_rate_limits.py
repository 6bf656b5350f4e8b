"""turn rate limits: a user's recent turns by time

The chat API counts a user's turns of the last minute before it begins another (the
per-user rate limit, shared by every replica through the database).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 05:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_turns_user_created", "turns", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_turns_user_created", table_name="turns")

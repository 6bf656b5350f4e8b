"""streaming replies by user

The per-user limit counts a user's replies still streaming before every turn. The
partial index of streaming replies was keyed by time only, and every reply enters it
(a reply begins streaming), so until vacuum reclaims them it holds every finished reply
too and a count for one user visited all of them: 0.44 ms after 3,000 turns, growing
with every turn. Keyed by user first, a count visits that user's entries only; the
sweeper, which looks for stale replies of any user, scans the whole index as before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STREAMING = sa.text("status = 'streaming'")


def upgrade() -> None:
    op.drop_index("ix_messages_streaming", table_name="messages")
    op.create_index(
        "ix_messages_streaming", "messages", ["user_id", "updated_at"], postgresql_where=STREAMING
    )


def downgrade() -> None:
    op.drop_index("ix_messages_streaming", table_name="messages")
    op.create_index("ix_messages_streaming", "messages", ["updated_at"], postgresql_where=STREAMING)

"""resumable turns: where each streamed delta ends

A turn's stream can be resumed from any chat API replica, with the event ids of the
original stream: the stored text plus the end offset of each delta rebuild the deltas
exactly. Written at each checkpoint and when the turn settles.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Expand only: code that does not know the column leaves it empty, and an empty
    # list replays the text as one delta.
    op.add_column(
        "turns",
        sa.Column(
            "delta_ends",
            postgresql.ARRAY(sa.Integer()),
            server_default="{}",
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("turns", "delta_ends")

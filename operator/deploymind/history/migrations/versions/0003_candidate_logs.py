"""The last log lines of refused candidates, out of status and Events: candidate logs.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "history_candidate_logs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("attempt_id", sa.String(32), nullable=False),
        sa.Column("revision", sa.String(512), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_history_candidate_logs_revision", "history_candidate_logs", ["uid", "revision", "at"])


def downgrade() -> None:
    op.drop_table("history_candidate_logs")

"""The first history schema: rollouts, steps, scans, health windows, reverts.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _uid() -> sa.Column[str]:
    return sa.Column("uid", sa.String(36), nullable=False)


def _object() -> list[sa.Column[str]]:
    return [sa.Column("namespace", sa.String(63), nullable=False), sa.Column("name", sa.String(253), nullable=False)]


def upgrade() -> None:
    op.create_table(
        "history_rollouts",
        sa.Column("id", sa.String(32), primary_key=True),
        _uid(),
        *_object(),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("revision", sa.String(512), nullable=False),
        sa.Column("commit", sa.String(64), nullable=False),
        sa.Column("image", sa.String(512), nullable=False),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("trigger_detail", sa.Text(), nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("env_names", sa.Text(), nullable=False),
        sa.Column("env_hash", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("result", sa.String(32), nullable=True),
        sa.Column("reason", sa.String(128), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
    )
    op.create_index("ix_history_rollouts_object", "history_rollouts", ["namespace", "name", "started_at"])
    op.create_index("ix_history_rollouts_uid", "history_rollouts", ["uid", "started_at"])

    op.create_table(
        "history_steps",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("attempt_id", sa.String(32), nullable=False),
        _uid(),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(128), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
    )
    op.create_index("ix_history_steps_attempt_id", "history_steps", ["attempt_id"])

    op.create_table(
        "history_scans",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _uid(),
        sa.Column("attempt_id", sa.String(32), nullable=False),
        sa.Column("revision", sa.String(512), nullable=False),
        *(sa.Column(severity, sa.Integer(), nullable=False) for severity in ("critical", "high", "medium", "low")),
        sa.Column("unknown", sa.Integer(), nullable=False),
        sa.Column("secrets", sa.Integer(), nullable=False),
        sa.Column("misconfigs", sa.Integer(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("report_json", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_history_scans_uid", "history_scans", ["uid"])
    op.create_index("ix_history_scans_attempt_id", "history_scans", ["attempt_id"])

    op.create_table(
        "history_health_windows",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _uid(),
        *_object(),
        sa.Column("revision", sa.String(512), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("window_end", sa.DateTime(), nullable=False),
        sa.Column("probes_ok", sa.Integer(), nullable=False),
        sa.Column("probes_failed", sa.Integer(), nullable=False),
        sa.Column("latency_p50_ms", sa.Float(), nullable=True),
        sa.Column("latency_p90_ms", sa.Float(), nullable=True),
        sa.Column("latency_p99_ms", sa.Float(), nullable=True),
        sa.Column("cpu_ratio", sa.Float(), nullable=True),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_history_health_windows_uid", "history_health_windows", ["uid", "window_start"])

    op.create_table(
        "history_reverts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        _uid(),
        *_object(),
        sa.Column("attempt_id", sa.String(32), nullable=False),
        sa.Column("from_revision", sa.String(512), nullable=False),
        sa.Column("to_revision", sa.String(512), nullable=False),
        sa.Column("reason", sa.String(128), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_history_reverts_object", "history_reverts", ["namespace", "name", "at"])


def downgrade() -> None:
    for table in ("history_reverts", "history_health_windows", "history_scans", "history_steps", "history_rollouts"):
        op.drop_table(table)

"""Context budget and compaction: per-agent budgets, compacted history, per-step usage.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Columns are added with plain ADD COLUMN (no batch copy): on SQLite a table copy would have
to drop `conversations`, which the full-text views of 0002 read.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("context_budget", sa.Integer(), nullable=True))
    op.add_column(
        "conversations",
        sa.Column("compacted_through", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "run_steps",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("context_tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_run_steps_run_id", "run_steps", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_run_steps_run_id", "run_steps")
    op.drop_table("run_steps")
    op.drop_column("conversations", "compacted_through")
    op.drop_column("agents", "context_budget")

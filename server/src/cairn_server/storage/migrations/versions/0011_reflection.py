"""Reflection (sleep-time memory): each conversation's watermark, and every reflection run.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = "status = 'running'"


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(
            sa.Column("reflected_through", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "reflections",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("agent_id", sa.String(), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column(
            "conversation_id", sa.String(), sa.ForeignKey("conversations.id"), nullable=False
        ),
        sa.Column("trigger", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=True),
        sa.Column("messages_read", sa.Integer(), nullable=False),
        sa.Column("through_message", sa.Integer(), nullable=False),
        sa.Column("edits", sa.JSON(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("cached_input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_reflections_agent_id", "reflections", ["agent_id"])
    op.create_index("ix_reflections_conversation_id", "reflections", ["conversation_id"])
    op.create_index(
        "ux_reflections_running",
        "reflections",
        ["agent_id"],
        unique=True,
        sqlite_where=sa.text(RUNNING),
        postgresql_where=sa.text(RUNNING),
    )


def downgrade() -> None:
    op.drop_index("ux_reflections_running", "reflections")
    op.drop_index("ix_reflections_conversation_id", "reflections")
    op.drop_index("ix_reflections_agent_id", "reflections")
    op.drop_table("reflections")
    # Not a batch (a copy of the table): SQLite's views over conversations would break it.
    op.drop_column("conversations", "reflected_through")

"""Real model servers: what a model's server taught (its window, its token ratio) is kept.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "model_profiles",
        sa.Column("model", sa.String(), primary_key=True),
        sa.Column("context_window", sa.Integer(), nullable=True),
        sa.Column("learned_budget", sa.Integer(), nullable=True),
        sa.Column("token_ratio", sa.Float(), nullable=False),
        sa.Column("ratio_samples", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("model_profiles")

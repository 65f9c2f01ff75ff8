"""Identity aliases: a repository's first commit moves its agent to the new key, and the key it
had before (its path or origin) keeps naming that agent.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_aliases",
        sa.Column("id", sa.String(), primary_key=True, nullable=False),
        sa.Column("user_id", sa.String(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("codebase_key", sa.String(), nullable=False),
        sa.Column("agent_id", sa.String(), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("user_id", "codebase_key"),
    )
    op.create_index("ix_agent_aliases_user_id", "agent_aliases", ["user_id"])
    op.create_index("ix_agent_aliases_agent_id", "agent_aliases", ["agent_id"])


def downgrade() -> None:
    op.drop_index("ix_agent_aliases_agent_id", table_name="agent_aliases")
    op.drop_index("ix_agent_aliases_user_id", table_name="agent_aliases")
    op.drop_table("agent_aliases")

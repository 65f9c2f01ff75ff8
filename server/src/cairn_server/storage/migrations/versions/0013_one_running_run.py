"""One running run per conversation, enforced by the database (a partial unique index).

Runs a database already holds two of in one conversation (a second replica's) are ended
first, all but the newest, as a restart would have ended them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = "status = 'running'"


def upgrade() -> None:
    op.execute(
        "UPDATE runs SET status = 'finished', stop_reason = 'server_restart', "
        "finished_at = CURRENT_TIMESTAMP "
        f"WHERE {RUNNING} AND EXISTS (SELECT 1 FROM runs AS newer WHERE "
        "newer.conversation_id = runs.conversation_id AND newer.status = 'running' AND "
        "(newer.created_at > runs.created_at OR "
        "(newer.created_at = runs.created_at AND newer.id > runs.id)))"
    )
    op.create_index(
        "ux_runs_running",
        "runs",
        ["conversation_id"],
        unique=True,
        sqlite_where=sa.text(RUNNING),
        postgresql_where=sa.text(RUNNING),
    )


def downgrade() -> None:
    op.drop_index("ux_runs_running", "runs")

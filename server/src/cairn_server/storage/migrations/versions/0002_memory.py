"""Memory: core blocks and their versions, archival passages, embeddings, full-text search.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Full-text search is dialect-specific and lives outside the SQLModel models:
SQLite gets FTS5 tables kept in step by triggers (`messages_fts`, `passages_fts`), each
with the owning agent as a second indexed column, so a search filters by agent inside the
index (5x faster than joining at 100k messages); PostgreSQL gets a generated
`search_vector` tsvector column with a GIN index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Porter stemming: "tests", "testing" and "tested" all match "test".
SQLITE_TOKENIZER = "porter unicode61 remove_diacritics 2"
POSTGRES_CONFIG = "english"
SEARCHED = {"messages": "content", "passages": "text"}
# The FTS indexes' `agent` column holds the owning agent's id without its underscore, one
# token whose posting list is that agent's rows only ("agt_x" would be two tokens, the first
# in every row). Searches match it first: `agent: "agtx" AND ...`.
SOURCES = {
    "messages": (
        "SELECT m.id AS id, m.content AS content, replace(c.agent_id, '_', '') AS agent "
        "FROM messages m JOIN conversations c ON c.id = m.conversation_id"
    ),
    "passages": "SELECT id, text, replace(agent_id, '_', '') AS agent FROM passages",
}
AGENT_OF_ROW = {
    "messages": "(SELECT replace(agent_id, '_', '') FROM conversations "
    "WHERE id = {row}.conversation_id)",
    "passages": "replace({row}.agent_id, '_', '')",
}


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("prompt_memory", sa.Text(), nullable=True))
        batch.add_column(sa.Column("prompt_metadata", sa.Text(), nullable=True))
        batch.add_column(sa.Column("memory_seen", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("summary", sa.Text(), nullable=False, server_default=""))

    op.create_table(
        "blocks",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("agent_id", sa.String(), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("char_limit", sa.Integer(), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("agent_id", "label"),
    )
    op.create_index("ix_blocks_agent_id", "blocks", ["agent_id"])

    op.create_table(
        "block_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("char_limit", sa.Integer(), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("author_kind", sa.String(), nullable=False),
        sa.Column("author", sa.String(), nullable=True),
        sa.Column("conversation_id", sa.String(), nullable=True),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("tool_call_id", sa.String(), nullable=True),
        sa.Column("tool", sa.String(), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("agent_id", "label", "version"),
    )
    op.create_index("ix_block_versions_agent_id", "block_versions", ["agent_id"])

    op.create_table(
        "passages",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("embedding_model", sa.String(), nullable=True),
        sa.Column("conversation_id", sa.String(), nullable=True),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_passages_agent_id", "passages", ["agent_id"])

    op.create_table(
        "message_embeddings",
        sa.Column(
            "message_id",
            sa.Integer(),
            sa.ForeignKey("messages.id"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("agent_id", sa.String(), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_message_embeddings_agent_id", "message_embeddings", ["agent_id"])

    dialect = op.get_bind().dialect.name
    for table, column in SEARCHED.items():
        if dialect == "sqlite":
            _create_sqlite_fts(table, column)
        elif dialect == "postgresql":
            _create_postgres_search(table, column)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in SEARCHED:
        if dialect == "sqlite":
            for suffix in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_fts_{suffix}")
            op.execute(f"DROP TABLE IF EXISTS {table}_fts")
            op.execute(f"DROP VIEW IF EXISTS {table}_fts_source")
        elif dialect == "postgresql":
            op.execute(f"DROP INDEX IF EXISTS ix_{table}_search_vector")
            op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS search_vector")
    for table in ("message_embeddings", "passages", "block_versions", "blocks"):
        op.drop_table(table)
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("summary")
        batch.drop_column("memory_seen")
        batch.drop_column("prompt_metadata")
        batch.drop_column("prompt_memory")


def _create_sqlite_fts(table: str, column: str) -> None:
    """An external-content FTS5 index over `table.column` and the row's agent token (read
    through the view `{table}_fts_source`), kept in step by triggers."""
    fts, source = f"{table}_fts", f"{table}_fts_source"
    op.execute(f"CREATE VIEW {source} AS {SOURCES[table]}")
    op.execute(
        f"CREATE VIRTUAL TABLE {fts} USING fts5({column}, agent, content='{source}', "
        f"content_rowid='id', tokenize='{SQLITE_TOKENIZER}')"
    )
    new_agent, old_agent = (AGENT_OF_ROW[table].format(row=row) for row in ("new", "old"))
    insert = (
        f"INSERT INTO {fts}(rowid, {column}, agent) VALUES (new.id, new.{column}, {new_agent});"
    )
    delete = (
        f"INSERT INTO {fts}({fts}, rowid, {column}, agent) "
        f"VALUES ('delete', old.id, old.{column}, {old_agent});"
    )
    op.execute(f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN {insert} END")
    op.execute(f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN {delete} END")
    op.execute(
        f"CREATE TRIGGER {fts}_update AFTER UPDATE OF {column} ON {table} "
        f"BEGIN {delete} {insert} END"
    )
    op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def _create_postgres_search(table: str, column: str) -> None:
    op.execute(
        f"ALTER TABLE {table} ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
        f"(to_tsvector('{POSTGRES_CONFIG}', {column})) STORED"
    )
    op.execute(f"CREATE INDEX ix_{table}_search_vector ON {table} USING gin (search_vector)")

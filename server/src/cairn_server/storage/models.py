"""Every table of the server, in one place.

Owns the SQLModel classes; Alembic migrations under storage/migrations mirror them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), **kw))


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: str = Field(default_factory=lambda: new_id("usr"), primary_key=True)
    name: str = Field(unique=True, index=True)
    created_at: datetime = _ts(nullable=False)


class ApiToken(SQLModel, table=True):
    """Only the SHA-256 of a token is kept; the plaintext is shown once when created."""

    __tablename__ = "api_tokens"
    id: str = Field(default_factory=lambda: new_id("tok"), primary_key=True)
    user_id: str = Field(foreign_key="users.id", index=True)
    token_hash: str = Field(unique=True, index=True)
    label: str = ""
    created_at: datetime = _ts(nullable=False)
    last_used_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class Agent(SQLModel, table=True):
    """One long-lived agent per (user, codebase)."""

    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("user_id", "codebase_key"),)
    id: str = Field(default_factory=lambda: new_id("agt"), primary_key=True)
    user_id: str = Field(foreign_key="users.id", index=True)
    codebase_key: str
    display_name: str
    origin: str | None = None
    model: str | None = Field(default=None, description="Overrides CAIRN_MODEL when set.")
    context_budget: int | None = Field(
        default=None, description="Prompt tokens a request may hold; None: CAIRN_CONTEXT_BUDGET."
    )
    created_at: datetime = _ts(nullable=False)


class Conversation(SQLModel, table=True):
    """A thread of messages with one agent.

    `prompt_memory` and `prompt_metadata` are the memory sections frozen into this
    conversation's cached prompt prefix (None until its first model call); `memory_seen`
    maps each block label to the version the conversation has been told about (in that
    prefix, by its own edit, or by an appended memory event).
    """

    __tablename__ = "conversations"
    id: str = Field(default_factory=lambda: new_id("cnv"), primary_key=True)
    agent_id: str = Field(foreign_key="agents.id", index=True)
    title: str = ""
    last_seq: int = 0
    prompt_memory: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    prompt_metadata: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    memory_seen: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON))
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    # Messages with an id up to this one were compacted into `summary`: they stay in recall
    # but are no longer sent to the model.
    compacted_through: int = 0
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class Message(SQLModel, table=True):
    """A model-facing message; the autoincrement id gives the order."""

    __tablename__ = "messages"
    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(foreign_key="conversations.id", index=True)
    run_id: str | None = Field(default=None, index=True)
    role: str  # user | assistant | tool | event (a memory change told to the model)
    content: str = Field(default="", sa_column=Column(Text, nullable=False))
    tool_calls: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    tool_call_id: str | None = None
    is_error: bool = False
    created_at: datetime = _ts(nullable=False)


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    id: str = Field(default_factory=lambda: new_id("run"), primary_key=True)
    conversation_id: str = Field(foreign_key="conversations.id", index=True)
    status: str = "running"  # running | finished
    stop_reason: str | None = None
    model: str
    steps: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    detail: str | None = None
    created_at: datetime = _ts(nullable=False)
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class RunStep(SQLModel, table=True):
    """One model call of a run: its usage and how full the context was."""

    __tablename__ = "run_steps"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    step: int
    model: str
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    context_tokens: int = 0
    created_at: datetime = _ts(nullable=False)


class ToolCallRecord(SQLModel, table=True):
    """A client tool request and, once settled, its result. `id` is the wire call_id."""

    __tablename__ = "tool_calls"
    id: str = Field(default_factory=lambda: new_id("call"), primary_key=True)
    conversation_id: str = Field(foreign_key="conversations.id", index=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    model_call_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    status: str = "pending"  # pending | ok | error | denied | unknown (closed unanswered)
    content: str = Field(default="", sa_column=Column(Text, nullable=False))
    reason: str | None = None
    created_at: datetime = _ts(nullable=False)
    settled_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class RunApproval(SQLModel, table=True):
    """How the client decided on one of a run's tool calls (the audit trail of approvals)."""

    __tablename__ = "approvals"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    conversation_id: str
    call_id: str
    tool: str
    decision: str  # allow | deny
    decided_by: str  # policy | user | nobody
    answer: str | None = None  # once | session | always | deny, when a person answered
    reason: str = Field(sa_column=Column(Text, nullable=False))
    shown_title: str
    shown: str = Field(sa_column=Column(Text, nullable=False))
    content_hash: str
    asked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    decided_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    created_at: datetime = _ts(nullable=False)


class Event(SQLModel, table=True):
    """A durable server event as sent, so a reconnecting client can be replayed."""

    __tablename__ = "events"
    conversation_id: str = Field(foreign_key="conversations.id", primary_key=True)
    seq: int = Field(primary_key=True)
    type: str
    payload: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _ts(nullable=False)


class Block(SQLModel, table=True):
    """A core memory block: always in the agent's context window, edited by agent and user."""

    __tablename__ = "blocks"
    __table_args__ = (UniqueConstraint("agent_id", "label"),)
    id: str = Field(default_factory=lambda: new_id("blk"), primary_key=True)
    agent_id: str = Field(foreign_key="agents.id", index=True)
    label: str
    description: str = ""
    value: str = Field(default="", sa_column=Column(Text, nullable=False))
    char_limit: int = 5000
    read_only: bool = False
    version: int = 1
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class BlockVersion(SQLModel, table=True):
    """One state of a block after an edit, with who made it and how.

    Kept by (agent, label) rather than by block id, so history outlives a deleted block.
    """

    __tablename__ = "block_versions"
    __table_args__ = (UniqueConstraint("agent_id", "label", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    agent_id: str = Field(foreign_key="agents.id", index=True)
    label: str
    version: int
    action: str  # create | edit | revert | delete
    value: str = Field(default="", sa_column=Column(Text, nullable=False))
    description: str = ""
    char_limit: int = 5000
    read_only: bool = False
    author_kind: str  # agent | user | system
    author: str | None = None
    conversation_id: str | None = None
    run_id: str | None = None
    tool_call_id: str | None = None
    tool: str | None = None
    reason: str | None = None
    created_at: datetime = _ts(nullable=False)


class Passage(SQLModel, table=True):
    """An archival passage the agent chose to keep; searchable by text and, optionally, vector."""

    __tablename__ = "passages"
    id: int | None = Field(default=None, primary_key=True)
    agent_id: str = Field(foreign_key="agents.id", index=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    embedding: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    embedding_model: str | None = None
    conversation_id: str | None = None
    run_id: str | None = None
    created_at: datetime = _ts(nullable=False)


class MessageEmbedding(SQLModel, table=True):
    """A message's vector, when an embedding provider is configured (float32 bytes)."""

    __tablename__ = "message_embeddings"
    message_id: int = Field(foreign_key="messages.id", primary_key=True)
    agent_id: str = Field(foreign_key="agents.id", index=True)
    model: str
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False))

"""Every table of the server, in one place.

Owns the SQLModel classes; Alembic migrations under storage/migrations mirror them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Text, UniqueConstraint
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
    created_at: datetime = _ts(nullable=False)


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"
    id: str = Field(default_factory=lambda: new_id("cnv"), primary_key=True)
    agent_id: str = Field(foreign_key="agents.id", index=True)
    title: str = ""
    last_seq: int = 0
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class Message(SQLModel, table=True):
    """A model-facing message; the autoincrement id gives the order."""

    __tablename__ = "messages"
    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(foreign_key="conversations.id", index=True)
    run_id: str | None = Field(default=None, index=True)
    role: str  # user | assistant | tool
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


class ToolCallRecord(SQLModel, table=True):
    """A client tool request and, once settled, its result. `id` is the wire call_id."""

    __tablename__ = "tool_calls"
    id: str = Field(default_factory=lambda: new_id("call"), primary_key=True)
    conversation_id: str = Field(foreign_key="conversations.id", index=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    model_call_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    status: str = "pending"  # pending | ok | error | denied
    content: str = Field(default="", sa_column=Column(Text, nullable=False))
    reason: str | None = None
    created_at: datetime = _ts(nullable=False)
    settled_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class Event(SQLModel, table=True):
    """A durable server event as sent, so a reconnecting client can be replayed."""

    __tablename__ = "events"
    conversation_id: str = Field(foreign_key="conversations.id", primary_key=True)
    seq: int = Field(primary_key=True)
    type: str
    payload: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _ts(nullable=False)

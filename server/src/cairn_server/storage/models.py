"""Every table of the server, in one place.

Owns the SQLModel classes; Alembic migrations under storage/migrations mirror them. Every
string, text and JSON column is one of storage/text.py's types, so it stores any text.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from cairn_protocol.messages import ApprovalAnswer, ApprovalDecision, DecidedBy, StopReason
from cairn_protocol.rest import (
    AuthorKind,
    BlockAction,
    CallOutcome,
    MessageRole,
    ReflectionStatus,
    ReflectionTrigger,
    RunStatus,
)
from sqlalchemy import Column, DateTime, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from cairn_server.storage.text import StoredJSON, StoredString, StoredText

# The largest value an integer column holds on every backend (PostgreSQL's INTEGER: 32 bits).
MAX_INTEGER = 2**31 - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _ts(**kw: Any) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), **kw))


class User(SQLModel, table=True):
    __tablename__ = "users"
    id: str = Field(default_factory=lambda: new_id("usr"), primary_key=True, sa_type=StoredString)
    name: str = Field(unique=True, index=True, sa_type=StoredString)
    created_at: datetime = _ts(nullable=False)


class ApiToken(SQLModel, table=True):
    """Only the SHA-256 of a token is kept; the plaintext is shown once when created."""

    __tablename__ = "api_tokens"
    id: str = Field(default_factory=lambda: new_id("tok"), primary_key=True, sa_type=StoredString)
    user_id: str = Field(foreign_key="users.id", index=True, sa_type=StoredString)
    token_hash: str = Field(unique=True, index=True, sa_type=StoredString)
    label: str = Field(default="", sa_type=StoredString)
    created_at: datetime = _ts(nullable=False)
    last_used_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    expires_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )

    def state(self, now: datetime) -> Literal["active", "expired", "revoked"]:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


class Agent(SQLModel, table=True):
    """One long-lived agent per (user, codebase)."""

    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("user_id", "codebase_key"),)
    id: str = Field(default_factory=lambda: new_id("agt"), primary_key=True, sa_type=StoredString)
    user_id: str = Field(foreign_key="users.id", index=True, sa_type=StoredString)
    codebase_key: str = Field(sa_type=StoredString)
    display_name: str = Field(sa_type=StoredString)
    origin: str | None = Field(default=None, sa_type=StoredString)
    model: str | None = Field(
        default=None, description="Overrides CAIRN_MODEL when set.", sa_type=StoredString
    )
    context_budget: int | None = Field(
        default=None, description="Prompt tokens a request may hold; None: CAIRN_CONTEXT_BUDGET."
    )
    # The conversation the person last had open in the TUI (an interactive hello), which the
    # TUI reopens; `cairn -p` never changes it. A plain id: a deleted conversation is skipped.
    interactive_conversation_id: str | None = Field(default=None, sa_type=StoredString)
    created_at: datetime = _ts(nullable=False)


class AgentAlias(SQLModel, table=True):
    """A key an agent's codebase was known by before it moved (a repository before its first
    commit: its path or origin), so a client still sending it finds the same agent."""

    __tablename__ = "agent_aliases"
    __table_args__ = (UniqueConstraint("user_id", "codebase_key"),)
    id: str = Field(default_factory=lambda: new_id("als"), primary_key=True, sa_type=StoredString)
    user_id: str = Field(foreign_key="users.id", index=True, sa_type=StoredString)
    codebase_key: str = Field(sa_type=StoredString)
    agent_id: str = Field(foreign_key="agents.id", index=True, sa_type=StoredString)
    created_at: datetime = _ts(nullable=False)


class Conversation(SQLModel, table=True):
    """A thread of messages with one agent.

    `prompt_memory` and `prompt_metadata` are the memory sections frozen into this
    conversation's cached prompt prefix (None until its first model call); `memory_seen`
    maps each block label to the version the conversation has been told about (in that
    prefix, by its own edit, or by an appended memory event).
    """

    __tablename__ = "conversations"
    id: str = Field(default_factory=lambda: new_id("cnv"), primary_key=True, sa_type=StoredString)
    agent_id: str = Field(foreign_key="agents.id", index=True, sa_type=StoredString)
    title: str = Field(default="", sa_type=StoredString)
    # The conversation whose run started this one as a helper (the `task` tool); None for a
    # person's conversation.
    parent_id: str | None = Field(default=None, sa_type=StoredString)
    last_seq: int = 0
    prompt_memory: str | None = Field(default=None, sa_column=Column(StoredText, nullable=True))
    prompt_metadata: str | None = Field(default=None, sa_column=Column(StoredText, nullable=True))
    memory_seen: dict[str, int] = Field(default_factory=dict, sa_column=Column(StoredJSON))
    summary: str = Field(default="", sa_column=Column(StoredText, nullable=False))
    # Messages with an id up to this one were compacted into `summary`: they stay in recall
    # but are no longer sent to the model.
    compacted_through: int = 0
    # Reflection's watermark: messages with an id up to this one were reflected on.
    reflected_through: int = 0
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class Message(SQLModel, table=True):
    """A model-facing message; the autoincrement id gives the order."""

    __tablename__ = "messages"
    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(foreign_key="conversations.id", index=True, sa_type=StoredString)
    run_id: str | None = Field(default=None, index=True, sa_type=StoredString)
    role: MessageRole = Field(sa_type=StoredString)
    content: str = Field(default="", sa_column=Column(StoredText, nullable=False))
    tool_calls: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(StoredJSON))
    tool_call_id: str | None = Field(default=None, sa_type=StoredString)
    is_error: bool = False
    created_at: datetime = _ts(nullable=False)


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    id: str = Field(default_factory=lambda: new_id("run"), primary_key=True, sa_type=StoredString)
    conversation_id: str = Field(foreign_key="conversations.id", index=True, sa_type=StoredString)
    status: RunStatus = Field(default="running", sa_type=StoredString)
    stop_reason: StopReason | None = Field(default=None, sa_type=StoredString)
    model: str = Field(sa_type=StoredString)
    # The server process running it (its replica id); None: one from before owners were kept.
    owner: str | None = Field(default=None, sa_type=StoredString)
    steps: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    detail: str | None = Field(default=None, sa_type=StoredString)
    created_at: datetime = _ts(nullable=False)
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class RunStep(SQLModel, table=True):
    """One model call of a run: its usage and how full the context was."""

    __tablename__ = "run_steps"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True, sa_type=StoredString)
    step: int
    model: str = Field(sa_type=StoredString)
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    context_tokens: int = 0
    # The budget the request was built within (null for steps stored before 0009).
    context_budget: int | None = Field(default=None)
    created_at: datetime = _ts(nullable=False)


class ToolCallRecord(SQLModel, table=True):
    """A client tool request and, once settled, its result. `id` is the wire call_id."""

    __tablename__ = "tool_calls"
    id: str = Field(default_factory=lambda: new_id("call"), primary_key=True, sa_type=StoredString)
    conversation_id: str = Field(foreign_key="conversations.id", index=True, sa_type=StoredString)
    run_id: str = Field(foreign_key="runs.id", index=True, sa_type=StoredString)
    model_call_id: str = Field(sa_type=StoredString)
    tool: str = Field(sa_type=StoredString)
    arguments: dict[str, Any] = Field(default_factory=dict, sa_column=Column(StoredJSON))
    status: CallOutcome = Field(default="pending", sa_type=StoredString)
    content: str = Field(default="", sa_column=Column(StoredText, nullable=False))
    reason: str | None = Field(default=None, sa_type=StoredString)
    created_at: datetime = _ts(nullable=False)
    settled_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class RunApproval(SQLModel, table=True):
    """How the client decided on one of a run's tool calls (the audit trail of approvals)."""

    __tablename__ = "approvals"
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True, sa_type=StoredString)
    conversation_id: str = Field(sa_type=StoredString)
    call_id: str = Field(sa_type=StoredString)
    tool: str = Field(sa_type=StoredString)
    decision: ApprovalDecision = Field(sa_type=StoredString)
    decided_by: DecidedBy = Field(sa_type=StoredString)
    answer: ApprovalAnswer | None = Field(default=None, sa_type=StoredString)  # a person's
    reason: str = Field(sa_column=Column(StoredText, nullable=False))
    shown_title: str = Field(sa_type=StoredString)
    shown: str = Field(sa_column=Column(StoredText, nullable=False))
    content_hash: str = Field(sa_type=StoredString)
    asked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    decided_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    created_at: datetime = _ts(nullable=False)


class Event(SQLModel, table=True):
    """A durable server event as sent, so a reconnecting client can be replayed."""

    __tablename__ = "events"
    conversation_id: str = Field(
        foreign_key="conversations.id", primary_key=True, sa_type=StoredString
    )
    seq: int = Field(primary_key=True)
    type: str = Field(sa_type=StoredString)
    payload: str = Field(sa_column=Column(StoredText, nullable=False))
    created_at: datetime = _ts(nullable=False)


class Block(SQLModel, table=True):
    """A core memory block: always in the agent's context window, edited by agent and user."""

    __tablename__ = "blocks"
    __table_args__ = (UniqueConstraint("agent_id", "label"),)
    id: str = Field(default_factory=lambda: new_id("blk"), primary_key=True, sa_type=StoredString)
    agent_id: str = Field(foreign_key="agents.id", index=True, sa_type=StoredString)
    label: str = Field(sa_type=StoredString)
    description: str = Field(default="", sa_type=StoredString)
    value: str = Field(default="", sa_column=Column(StoredText, nullable=False))
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
    agent_id: str = Field(foreign_key="agents.id", index=True, sa_type=StoredString)
    label: str = Field(sa_type=StoredString)
    version: int
    action: BlockAction = Field(sa_type=StoredString)
    value: str = Field(default="", sa_column=Column(StoredText, nullable=False))
    description: str = Field(default="", sa_type=StoredString)
    char_limit: int = 5000
    read_only: bool = False
    author_kind: AuthorKind = Field(sa_type=StoredString)
    author: str | None = Field(default=None, sa_type=StoredString)
    conversation_id: str | None = Field(default=None, sa_type=StoredString)
    run_id: str | None = Field(default=None, sa_type=StoredString)
    tool_call_id: str | None = Field(default=None, sa_type=StoredString)
    tool: str | None = Field(default=None, sa_type=StoredString)
    reason: str | None = Field(default=None, sa_type=StoredString)
    created_at: datetime = _ts(nullable=False)


class Passage(SQLModel, table=True):
    """An archival passage the agent chose to keep; searchable by text and, optionally, vector."""

    __tablename__ = "passages"
    id: int | None = Field(default=None, primary_key=True)
    agent_id: str = Field(foreign_key="agents.id", index=True, sa_type=StoredString)
    text: str = Field(sa_column=Column(StoredText, nullable=False))
    tags: list[str] = Field(default_factory=list, sa_column=Column(StoredJSON))
    embedding: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    embedding_model: str | None = Field(default=None, sa_type=StoredString)
    conversation_id: str | None = Field(default=None, sa_type=StoredString)
    run_id: str | None = Field(default=None, sa_type=StoredString)
    created_at: datetime = _ts(nullable=False)


class MessageEmbedding(SQLModel, table=True):
    """A message's vector, when an embedding provider is configured (float32 bytes)."""

    __tablename__ = "message_embeddings"
    message_id: int = Field(foreign_key="messages.id", primary_key=True)
    agent_id: str = Field(foreign_key="agents.id", index=True, sa_type=StoredString)
    model: str = Field(sa_type=StoredString)
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ModelProfile(SQLModel, table=True):
    """What Cairn learned about one model spec from its server: the budget its overflows
    taught, and how many of its tokens one counted token is (kept across restarts)."""

    __tablename__ = "model_profiles"
    model: str = Field(primary_key=True, sa_type=StoredString)
    # The window its server reported in an overflow error (its own tokens), if it did.
    context_window: int | None = Field(default=None)
    learned_budget: int | None = Field(default=None)
    token_ratio: float = Field(default=1.0)
    ratio_samples: int = Field(default=0)
    updated_at: datetime = _ts(nullable=False)


class AgentMcpServer(SQLModel, table=True):
    """A streamable-HTTP MCP server an agent's runs call from the server (set over REST).

    `headers` (e.g. an Authorization token) are sent with every request to it; each value is
    stored sealed with the server's key (tools/mcp_headers.py) and never shown back."""

    __tablename__ = "agent_mcp_servers"
    __table_args__ = (UniqueConstraint("agent_id", "name"),)
    id: str = Field(default_factory=lambda: new_id("mcp"), primary_key=True, sa_type=StoredString)
    agent_id: str = Field(foreign_key="agents.id", index=True, sa_type=StoredString)
    name: str = Field(sa_type=StoredString)
    url: str = Field(sa_type=StoredString)
    headers: dict[str, str] = Field(default_factory=dict, sa_column=Column(StoredJSON))
    timeout_s: float = Field(default=60.0)
    created_at: datetime = _ts(nullable=False)


class Reflection(SQLModel, table=True):
    """One reflection (sleep-time memory) over a conversation: what it read (`through_message`,
    also when it failed, so an idle conversation is not retried until it has new messages),
    the edits it proposed (`edits`: label, tool, version made or reason refused), its usage.
    At most one runs per agent: the partial unique index ux_reflections_running (agent_id
    where status is running), made by migration 0011 only (see db.PARTIAL_INDEXES)."""

    __tablename__ = "reflections"
    id: str = Field(default_factory=lambda: new_id("rfl"), primary_key=True, sa_type=StoredString)
    agent_id: str = Field(foreign_key="agents.id", index=True, sa_type=StoredString)
    conversation_id: str = Field(foreign_key="conversations.id", index=True, sa_type=StoredString)
    trigger: ReflectionTrigger = Field(sa_type=StoredString)
    status: ReflectionStatus = Field(default="running", sa_type=StoredString)
    model: str | None = Field(default=None, sa_type=StoredString)
    messages_read: int = 0
    through_message: int = 0
    edits: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(StoredJSON))
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    detail: str | None = Field(default=None, sa_column=Column(StoredText, nullable=True))
    created_at: datetime = _ts(nullable=False)
    finished_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )

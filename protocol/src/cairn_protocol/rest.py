"""The public shapes of the server's REST API: what each route returns, as the client reads it.

Owns the response models (agents, conversations, messages, runs, approvals, memory, context)
and the value literals the server's tables share with them; pydantic only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cairn_protocol.messages import ApprovalRecord, StopReason

RunStatus = Literal["running", "finished"]
# A stored message: a chat role, or "event", a note from the system (e.g. a memory change).
MessageRole = Literal["user", "assistant", "tool", "event"]
# How a client tool call ended; "unknown": the server stopped waiting without an answer.
CallOutcome = Literal["pending", "ok", "error", "denied", "unknown"]
BlockAction = Literal["create", "edit", "revert", "delete"]
# "reflection": the background pass that reads a conversation and keeps memory (sleep-time).
AuthorKind = Literal["agent", "user", "system", "reflection"]
# A reflection going, ended (its edits applied, some perhaps refused), or failed (none made).
ReflectionStatus = Literal["running", "finished", "failed"]
# What started it: the conversation went idle, or a person asked (/reflect, the REST route).
ReflectionTrigger = Literal["idle", "requested"]

# A refused request's JSON body is {"detail": "<one line>"}, plus "code" for these refusals:
# a model its provider does not have (its GET /models lacks it, or it refused the key).
MODEL_NOT_OFFERED = "model_not_offered"


class PublicModel(BaseModel):
    """Base of every response: fields a newer server adds are ignored by an older client."""

    model_config = ConfigDict(extra="ignore", frozen=True, from_attributes=True)


_SECRETS_REDACTED = Field(
    default=0, description="Secrets cut from the text this request stored (they are never stored)."
)


# --------------------------------------------------------------------------- agents, messages


class McpServerPublic(PublicModel):
    """A streamable-HTTP MCP server the agent's runs call from the server; its headers'
    values are never shown."""

    name: str
    url: str
    timeout_s: float
    header_names: list[str]
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Each header's value as shown: its ${NAME} references (resolved from the "
        "server's environment when it connects) and *** for any other text, which is stored "
        "sealed and never shown.",
    )
    tools: list[str] = Field(
        default_factory=list, description="Its tools as the model sees them (mcp__name__tool)."
    )
    problem: str | None = Field(
        default=None, description="Why its tools could not be listed (then it offers none)."
    )


class AgentPublic(PublicModel):
    """One long-lived agent per (user, codebase)."""

    id: str
    user_id: str
    codebase_key: str
    display_name: str
    origin: str | None = None
    model: str | None = Field(default=None, description="Overrides CAIRN_MODEL when set.")
    default_model: str | None = Field(
        default=None,
        description="The model the server runs when `model` is None (CAIRN_MODEL, else the "
        "default for the key it has); None when it has none.",
    )
    context_budget: int | None = Field(
        default=None, description="Prompt tokens a request may hold; None: CAIRN_CONTEXT_BUDGET."
    )
    created_at: datetime


class ConversationPublic(PublicModel):
    """A thread of messages with one agent, with the memory frozen into its prompt prefix."""

    id: str
    agent_id: str
    title: str = Field(
        default="",
        description="The first line of its first request, cut to about 60 characters; "
        '"" until it has one.',
    )
    parent_id: str | None = Field(
        default=None,
        description="Set for a helper's conversation (started by the `task` tool): the "
        "conversation whose run started it.",
    )
    last_seq: int = 0
    prompt_memory: str | None = None
    prompt_metadata: str | None = None
    memory_seen: dict[str, int] = Field(default_factory=dict)
    summary: str = ""
    compacted_through: int = 0
    message_count: int = Field(
        default=0, description="User and assistant messages (what its history shows)."
    )
    created_at: datetime
    updated_at: datetime = Field(description="Its last activity: when its last message was stored.")


class MessagePublic(PublicModel):
    id: int
    conversation_id: str
    run_id: str | None = None
    role: MessageRole
    content: str = ""
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    tool_call_id: str | None = None
    is_error: bool = False
    created_at: datetime


class MessageHit(PublicModel):
    """A message found by recall search, best first."""

    message_id: int
    conversation_id: str
    role: MessageRole
    content: str
    created_at: datetime
    score: float


# --------------------------------------------------------------------------- runs


class RunPublic(PublicModel):
    """One request's run: its outcome, model calls and usage (`input_tokens` includes the
    cached ones)."""

    id: str
    conversation_id: str
    status: RunStatus
    stop_reason: StopReason | None = None
    model: str
    steps: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    detail: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class RunStepPublic(PublicModel):
    """One model call of a run: its usage and how full the context was."""

    id: int
    run_id: str
    step: int
    model: str
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    context_tokens: int = 0
    created_at: datetime


class ApprovalPublic(ApprovalRecord):
    """How one tool call of a run was decided, what was shown, and what came of the call."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str
    conversation_id: str
    call_id: str
    tool: str
    outcome: CallOutcome = Field(
        description='How the call ended; "unknown": the client never said whether it ran.'
    )
    outcome_reason: str | None = Field(
        description="Why it failed, was denied, or was stopped (e.g. a command killed after "
        "N s when the run was interrupted)."
    )
    outcome_content: str = Field(
        description="What the model was given: the output, secrets redacted (a killed "
        "command's output up to the kill)."
    )


# --------------------------------------------------------------------------- memory


class BlockPublic(PublicModel):
    """A core memory block as it is now."""

    label: str
    description: str
    value: str
    char_limit: int
    read_only: bool
    version: int
    chars: int
    updated_at: datetime
    secrets_redacted: int = _SECRETS_REDACTED


class BlockVersionPublic(PublicModel):
    """One state of a block after an edit, with who made it and how."""

    label: str
    version: int
    action: BlockAction
    value: str
    description: str
    char_limit: int
    read_only: bool
    author_kind: AuthorKind
    author: str | None
    conversation_id: str | None
    run_id: str | None
    tool_call_id: str | None
    tool: str | None
    reason: str | None
    created_at: datetime


class BlockDiff(PublicModel):
    label: str
    from_version: int
    to_version: int
    diff: str


class PassagePublic(PublicModel):
    """An archival passage; `score` is its relevance when it answers a query."""

    id: int
    text: str
    tags: list[str]
    created_at: datetime
    conversation_id: str | None
    run_id: str | None
    score: float | None = None
    secrets_redacted: int = _SECRETS_REDACTED


# --------------------------------------------------------------------------- reflection


class ReflectionEdit(PublicModel):
    """One memory edit a reflection proposed: the version it made, or why it was refused."""

    label: str
    tool: str = Field(description="memory_insert, memory_replace or memory_rethink.")
    version: int | None = Field(default=None, description="The version it made; None: refused.")
    reason: str | None = Field(default=None, description="Why it was refused.")


class ReflectionPublic(PublicModel):
    """One reflection over a conversation: what it read, the edits it made or had refused,
    and what its model calls cost (`input_tokens` includes the cached ones)."""

    id: str
    agent_id: str
    conversation_id: str
    trigger: ReflectionTrigger
    status: ReflectionStatus
    model: str | None = None
    messages_read: int = 0
    through_message: int = Field(default=0, description="The last message it read (its watermark).")
    edits: list[ReflectionEdit] = Field(default_factory=list)
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    detail: str | None = None
    created_at: datetime
    finished_at: datetime | None = None

    @property
    def applied(self) -> list[ReflectionEdit]:
        return [edit for edit in self.edits if edit.version is not None]

    @property
    def refused(self) -> list[ReflectionEdit]:
        return [edit for edit in self.edits if edit.version is None]


# --------------------------------------------------------------------------- context


class ContextItem(PublicModel):
    name: str
    tokens: int


class ContextSection(PublicModel):
    name: str
    tokens: int
    text: str
    items: list[ContextItem]


class ContextReport(PublicModel):
    """The conversation's next request by section, in tokens, beside the budget."""

    conversation_id: str
    model: str | None
    tokenizer: str
    budget: int
    total_tokens: int
    sections: list[ContextSection]


# --------------------------------------------------------------------------- agent files

# The largest agent file (.af) the server reads; a larger one is refused before it is parsed.
AGENT_FILE_MAX_BYTES = 32 * 1024 * 1024
# What became of one part of an imported agent file.
ImportOutcome = Literal["kept", "converted", "left_out"]


class ImportItem(PublicModel):
    """One row of an import's report: a part of the file, what became of it, and why."""

    kind: str = Field(description="block, system, messages, passages, model, tool, setting, …")
    name: str
    outcome: ImportOutcome
    count: int = Field(default=1, description="How many of them (messages are one row).")
    reason: str = ""


class AgentImportReport(PublicModel):
    """The agent an agent file became, the conversation holding its messages, and the table
    of what was kept, converted or left out."""

    agent: AgentPublic
    conversation_id: str | None = Field(
        default=None, description="The conversation holding the imported messages, if any."
    )
    replaced_agent_id: str | None = Field(
        default=None,
        description="The agent the codebase had before (--replace): set aside, not deleted.",
    )
    items: list[ImportItem]

    def total(self, outcome: ImportOutcome) -> int:
        """How many parts had `outcome` (each row counts `count`)."""
        return sum(item.count for item in self.items if item.outcome == outcome)

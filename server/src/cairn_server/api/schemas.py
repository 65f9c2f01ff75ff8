"""Request and response bodies of the REST API that are not table rows.

Owns the public JSON shapes of blocks, versions, passages, search hits, context reports and
approval records with their calls' outcomes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from cairn_protocol.messages import ApprovalRecord
from pydantic import BaseModel, ConfigDict, Field

from cairn_server.config import MIN_BUDGET
from cairn_server.memory.blocks import DEFAULT_CHAR_LIMIT, MAX_CHAR_LIMIT
from cairn_server.storage.models import (
    MAX_INTEGER,
    Block,
    BlockVersion,
    RunApproval,
    ToolCallRecord,
)

# Integers in parameters and bodies stay within what the database holds (else 422, not 500).
Number = Annotated[int, Field(ge=1, le=MAX_INTEGER)]  # a version or a row id
Offset = Annotated[int, Field(ge=0, le=MAX_INTEGER)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BlockCreate(_Body):
    label: str = Field(description="1-40 lowercase letters, digits or _, starting with a letter.")
    value: str = ""
    description: str = ""
    char_limit: int = Field(default=DEFAULT_CHAR_LIMIT, ge=1, le=MAX_CHAR_LIMIT)
    read_only: bool = Field(default=False, description="Read-only blocks stop the agent only.")


class BlockUpdate(_Body):
    value: str | None = None
    description: str | None = None
    char_limit: int | None = Field(default=None, ge=1, le=MAX_CHAR_LIMIT)
    read_only: bool | None = None
    expected_version: Number | None = Field(
        default=None, description="Refuse with 409 unless the block is still at this version."
    )
    reason: str | None = Field(default=None, description="Kept in the block's history.")


class AgentUpdate(_Body):
    context_budget: int | None = Field(
        ge=MIN_BUDGET,
        le=MAX_INTEGER,
        description="Prompt tokens one request may hold; null returns to CAIRN_CONTEXT_BUDGET.",
    )


class RevertRequest(_Body):
    version: Number
    reason: str | None = None


_SECRETS_REDACTED = Field(
    default=0, description="Secrets cut from the text this request stored (they are never stored)."
)


class BlockOut(BaseModel):
    label: str
    description: str
    value: str
    char_limit: int
    read_only: bool
    version: int
    chars: int
    updated_at: datetime
    secrets_redacted: int = _SECRETS_REDACTED

    @classmethod
    def of(cls, block: Block, secrets_redacted: int = 0) -> BlockOut:
        return cls(
            label=block.label,
            description=block.description,
            value=block.value,
            char_limit=block.char_limit,
            read_only=block.read_only,
            version=block.version,
            chars=len(block.value),
            updated_at=block.updated_at,
            secrets_redacted=secrets_redacted,
        )


class BlockVersionOut(BaseModel):
    label: str
    version: int
    action: str
    value: str
    description: str
    char_limit: int
    read_only: bool
    author_kind: str
    author: str | None
    conversation_id: str | None
    run_id: str | None
    tool_call_id: str | None
    tool: str | None
    reason: str | None
    created_at: datetime

    @classmethod
    def of(cls, version: BlockVersion) -> BlockVersionOut:
        return cls.model_validate(version, from_attributes=True)


class BlockDiff(BaseModel):
    label: str
    from_version: int
    to_version: int
    diff: str


class PassageCreate(_Body):
    text: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)


class PassageOut(BaseModel):
    id: int
    text: str
    tags: list[str]
    created_at: datetime
    conversation_id: str | None
    run_id: str | None
    score: float | None = None
    secrets_redacted: int = _SECRETS_REDACTED


class ContextItem(BaseModel):
    name: str
    tokens: int


class ContextSection(BaseModel):
    name: str
    tokens: int
    text: str
    items: list[ContextItem]


class ContextReport(BaseModel):
    conversation_id: str
    model: str | None
    tokenizer: str
    budget: int
    total_tokens: int
    sections: list[ContextSection]


class ApprovalOut(ApprovalRecord):
    """How one tool call of a run was decided, what was shown, and what came of the call."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    conversation_id: str
    call_id: str
    tool: str
    outcome: Literal["pending", "ok", "error", "denied", "unknown"] = Field(
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

    @classmethod
    def of(cls, approval: RunApproval, call: ToolCallRecord | None) -> ApprovalOut:
        return cls.model_validate(
            {
                **approval.model_dump(),
                "outcome": call.status if call is not None else "pending",
                "outcome_reason": call.reason if call is not None else None,
                "outcome_content": call.content if call is not None else "",
            }
        )

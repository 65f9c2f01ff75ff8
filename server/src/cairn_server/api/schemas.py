"""Request and response bodies of the REST API that are not table rows.

Owns the public JSON shapes of blocks, versions, passages, search hits and context reports.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from cairn_server.config import MIN_BUDGET
from cairn_server.memory.blocks import DEFAULT_CHAR_LIMIT, MAX_CHAR_LIMIT
from cairn_server.storage.models import MAX_INTEGER, Block, BlockVersion

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


class BlockOut(BaseModel):
    label: str
    description: str
    value: str
    char_limit: int
    read_only: bool
    version: int
    chars: int
    updated_at: datetime

    @classmethod
    def of(cls, block: Block) -> BlockOut:
        return cls(
            label=block.label,
            description=block.description,
            value=block.value,
            char_limit=block.char_limit,
            read_only=block.read_only,
            version=block.version,
            chars=len(block.value),
            updated_at=block.updated_at,
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

"""Request bodies of the REST API, and the conversions of table rows to its public shapes.

Owns what a route accepts; what it returns is defined once, in cairn_protocol.rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, TypeVar

from cairn_protocol.rest import ApprovalPublic, BlockPublic, PublicModel
from pydantic import BaseModel, ConfigDict, Field

from cairn_server.config import MIN_BUDGET
from cairn_server.memory.blocks import DEFAULT_CHAR_LIMIT, MAX_CHAR_LIMIT
from cairn_server.storage.models import MAX_INTEGER, Block, RunApproval, ToolCallRecord

# Integers in parameters and bodies stay within what the database holds (else 422, not 500).
Number = Annotated[int, Field(ge=1, le=MAX_INTEGER)]  # a version or a row id
Offset = Annotated[int, Field(ge=0, le=MAX_INTEGER)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class McpServerBody(_Body):
    """A streamable-HTTP MCP server for the agent's runs (PUT replaces one of that name)."""

    url: str = Field(
        pattern=r"^https?://[^\s]+$", max_length=2000, description="Its MCP endpoint (http(s))."
    )
    headers: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,100}$")],
        Annotated[str, Field(max_length=8000)],
    ] = Field(
        default_factory=dict,
        max_length=20,
        description="Sent with every request (e.g. Authorization); never shown back. A value "
        "may name the server's environment as ${NAME} (resolved when it connects), so no "
        "secret is stored; other values are stored sealed with the server's key.",
    )
    timeout_s: float = Field(default=60.0, gt=0, le=600, description="One call's limit.")


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
    """What a PATCH changes: only the fields it names."""

    context_budget: int | None = Field(
        default=None,
        ge=MIN_BUDGET,
        le=MAX_INTEGER,
        description="Prompt tokens one request may hold; null returns to CAIRN_CONTEXT_BUDGET.",
    )
    model: str | None = Field(
        default=None,
        max_length=200,
        description='The agent\'s model ("openai/<model>", "anthropic/<model>"), used from its '
        'next message on and kept; null or "" returns to the server\'s default (CAIRN_MODEL). '
        "422 naming what the server can run when it cannot run this one.",
    )


class RevertRequest(_Body):
    version: Number
    reason: str | None = None


class PassageCreate(_Body):
    text: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)


PublicT = TypeVar("PublicT", bound=PublicModel)


def public(shape: type[PublicT], rows: Iterable[object]) -> list[PublicT]:
    """Table rows as the API shows them: only the fields of `shape`."""
    return [shape.model_validate(row) for row in rows]


def block_public(block: Block, secrets_redacted: int = 0) -> BlockPublic:
    """The block as the API shows it; `secrets_redacted`: cut from what this request stored."""
    return BlockPublic.model_validate(
        {**block.model_dump(), "chars": len(block.value), "secrets_redacted": secrets_redacted}
    )


def approval_public(approval: RunApproval, call: ToolCallRecord | None) -> ApprovalPublic:
    """The decision on a call joined with how the call ended (None: not settled yet)."""
    return ApprovalPublic.model_validate(
        {
            **approval.model_dump(),
            "outcome": call.status if call is not None else "pending",
            "outcome_reason": call.reason if call is not None else None,
            "outcome_content": call.content if call is not None else "",
        }
    )

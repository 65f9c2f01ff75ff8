"""What every server-side tool is made of: its spec, argument model, context and outcome.

Owns the shapes every tool family in this package shares, and the note on secrets cut from
what a tool stores.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cairn_protocol import Usage
from cairn_protocol.redaction import secrets_phrase
from cairn_protocol.tools import ToolKind
from cairn_protocol.validation import schema_without_titles
from pydantic import BaseModel

from cairn_server.domain import ToolSpec
from cairn_server.memory.services import Memory

if TYPE_CHECKING:
    from cairn_server.tools.web_pages import WebPages


@dataclass(frozen=True)
class ToolContext:
    """Who is calling: the agent, its conversation and run, and the model's call id; the
    services the tools use (memory, and the web pages fetch_url reads, None where there are
    none)."""

    memory: Memory
    agent_id: str
    conversation_id: str
    run_id: str | None = None
    tool_call_id: str | None = None
    web: WebPages | None = None
    # The MCP tools this run keeps behind tool_search (their definitions not yet sent).
    deferred: tuple[ToolSpec, ...] = ()
    # What starts helper runs for this run (the `task` tool); None in a helper itself.
    helpers: HelperLauncher | None = None


@dataclass(frozen=True)
class ToolOutcome:
    """What the model is told. `seen_versions`: block versions this call showed the model,
    so the conversation is not told about its own edit a second time."""

    content: str
    is_error: bool = False
    seen_versions: Mapping[str, int] = field(default_factory=dict)
    # Deferred tools whose definitions the model loaded (tool_search): sent from now on.
    loaded: tuple[str, ...] = ()
    # Model tokens the call spent (a helper run's): counted in the calling run's totals.
    usage: Usage | None = None


class HelperLauncher(Protocol):
    """Runs one helper (tools/task.py's arguments, validated) to its end for the calling
    run; the runtime implements it (runtime/helpers.py)."""

    async def run_helper(self, ctx: ToolContext, args: Any) -> ToolOutcome: ...


ToolFn = Callable[[ToolContext, Any], Awaitable[ToolOutcome]]
# For a tool the run's client must approve first: the arguments its client decides on (in
# the one spelling the tool will then use), or ValueError with one line for the model.
AskFn = Callable[[Any], dict[str, Any]]


@dataclass(frozen=True)
class ServerTool:
    spec: ToolSpec
    args: type[BaseModel]
    run: ToolFn
    kind: ToolKind  # as the protocol names client tools' kinds: what the tool does
    asks: AskFn | None = None  # set: runs only once the run's client approved these arguments


def server_tool(
    name: str,
    description: str,
    args: type[BaseModel],
    run: ToolFn,
    kind: ToolKind,
    asks: AskFn | None = None,
) -> ServerTool:
    """A tool whose JSON schema is the argument model's, without pydantic's titles."""
    spec = ToolSpec(name, description, schema_without_titles(args))
    return ServerTool(spec, args, run, kind, asks)


def tool_error(message: str) -> ToolOutcome:
    return ToolOutcome(f"Error: {message}", is_error=True)


def redacted_note(secrets_redacted: int) -> str:
    """What a tool that stored text adds when secrets were cut from it first."""
    if not secrets_redacted:
        return ""
    return (
        f"\n{secrets_phrase(secrets_redacted)} redacted before storing: memory never keeps "
        "secrets; [REDACTED:kind] stands in their place."
    )

"""The server's one tool registry: which tools a run offers, what each does, who runs it, dispatch.

Owns the table of server tools (every family in this package registers here) and the
specs of the client tools as the model sees them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from cairn_protocol import CLIENT_TOOLS
from cairn_protocol.mcp import McpToolOffer, is_mcp_tool
from cairn_protocol.tools import FETCH_URL, ToolKind, invalid_arguments
from pydantic import BaseModel, ValidationError

from cairn_server.config import FetchSettings
from cairn_server.domain import MalformedArguments, ToolCall, ToolSpec
from cairn_server.tools.archival import ARCHIVAL_TOOLS
from cairn_server.tools.base import ServerTool, ToolContext, ToolOutcome, tool_error
from cairn_server.tools.fetch_url import FETCH_TOOLS
from cairn_server.tools.memory_edit import MEMORY_EDIT_TOOLS
from cairn_server.tools.recall_search import RECALL_TOOLS
from cairn_server.tools.task import TASK_TOOL
from cairn_server.tools.tool_search import TOOL_SEARCH, TOOL_SEARCH_TOOL

SERVER_TOOLS: dict[str, ServerTool] = {
    tool.spec.name: tool
    for tool in [*MEMORY_EDIT_TOOLS, *RECALL_TOOLS, *ARCHIVAL_TOOLS, *FETCH_TOOLS, TASK_TOOL]
}
# Server tools a run gets only when it needs them (tool_search: when MCP tools are deferred).
ON_DEMAND_TOOLS: dict[str, ServerTool] = {TOOL_SEARCH: TOOL_SEARCH_TOOL}

# Who runs a tool: the server itself, or the client that offered it.
Runner = Literal["server", "client"]


class ToolRegistry:
    """Every tool a run may get. Server tools run here; client tools are only described."""

    def __init__(
        self,
        server_tools: Mapping[str, ServerTool] = SERVER_TOOLS,
        on_demand: Mapping[str, ServerTool] = ON_DEMAND_TOOLS,
    ) -> None:
        self._always = server_tools
        self._on_demand = on_demand
        self._server_tools = {**on_demand, **server_tools}

    def specs(
        self, offered_client_tools: Iterable[str], mcp_tools: Sequence[McpToolOffer] = ()
    ) -> list[ToolSpec]:
        """What a run offers the model: the client tools its client offered (in a stable
        order), every server tool, then the client's MCP tools (each name once)."""
        offered = set(offered_client_tools)
        client = [
            ToolSpec(name, tool.description, tool.parameters_schema())
            for name, tool in CLIENT_TOOLS.items()
            if name in offered
        ]
        mcp = {
            tool.name: ToolSpec(tool.name, tool.description, tool.input_schema)
            for tool in mcp_tools
            if tool.name not in self._server_tools  # the agent's own MCP server wins
        }
        return [*client, *(tool.spec for tool in self._always.values()), *mcp.values()]

    def with_tools(self, extra: Sequence[ServerTool]) -> ToolRegistry:
        """This registry plus `extra` server tools (an agent's HTTP MCP servers' tools)."""
        if not extra:
            return self
        always = {**self._always, **{tool.spec.name: tool for tool in extra}}
        return ToolRegistry(always, self._on_demand)

    def kind(self, name: str) -> ToolKind | None:
        """What the tool called `name` does (read, edit, shell or other); None when no such
        tool exists."""
        if name in self._server_tools:
            return self._server_tools[name].kind
        if is_mcp_tool(name):
            return "other"
        return CLIENT_TOOLS[name].kind if name in CLIENT_TOOLS else None

    def runner(self, name: str) -> Runner | None:
        """Who runs the tool called `name`; None when no such tool exists."""
        if name in self._server_tools:
            return "server"
        return "client" if name in CLIENT_TOOLS or is_mcp_tool(name) else None

    def asks(self, name: str) -> bool:
        """Whether the server tool called `name` runs only once the run's client approved it."""
        tool = self._server_tools.get(name)
        return tool is not None and tool.asks is not None

    def approval_arguments(self, call: ToolCall) -> dict[str, Any] | ToolOutcome:
        """What the client is asked to approve for this call (see `asks`), or why nobody
        needs to be asked: arguments that can never run, as an outcome for the model."""
        tool = self._server_tools.get(call.name)
        args = self._validated(tool, call)
        if isinstance(args, ToolOutcome):
            return args
        assert tool is not None and tool.asks is not None
        try:
            return tool.asks(args)
        except ValueError as exc:
            return tool_error(str(exc))

    async def dispatch(self, ctx: ToolContext, call: ToolCall) -> ToolOutcome:
        """Validate the model's arguments and run the server tool; every failure becomes a
        clear outcome for the model."""
        tool = self._server_tools.get(call.name)
        args = self._validated(tool, call)
        if isinstance(args, ToolOutcome):
            return args
        assert tool is not None
        outcome = await tool.run(ctx, args)
        if outcome.seen_versions:
            await ctx.memory.snapshots.mark_seen(ctx.conversation_id, outcome.seen_versions)
        return outcome

    @staticmethod
    def _validated(tool: ServerTool | None, call: ToolCall) -> BaseModel | ToolOutcome:
        if tool is None:
            return tool_error(f"{call.name!r} is not a tool the server runs")
        if isinstance(call.parsed, MalformedArguments):
            return tool_error(call.parsed.problem)
        try:
            return tool.args.model_validate(call.parsed)
        except ValidationError as exc:
            return tool_error(invalid_arguments(call.name, exc))


TOOLS = ToolRegistry()


def approve_only(tool: str) -> bool:
    """Whether a tool request (a stored call) is for approval only: of a server tool that
    runs once its client approved it (fetch_url). Other requests no client tool names (a
    helper's `helper_worktree`) are answered by the client itself."""
    return TOOLS.asks(tool)


def server_registry(fetch: FetchSettings) -> ToolRegistry:
    """The registry a server's runs use: every tool, less fetch_url when the operator turned
    it off (CAIRN_FETCH_ENABLED=0)."""
    if fetch.enabled:
        return TOOLS
    return ToolRegistry({name: tool for name, tool in SERVER_TOOLS.items() if name != FETCH_URL})

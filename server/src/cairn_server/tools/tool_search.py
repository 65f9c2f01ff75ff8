"""Deferred tool definitions: MCP tools kept out of the prompt, behind one search tool.

Owns when a run's MCP tool schemas are deferred (their tokens past a share of the budget),
the `tool_search` tool that finds and loads their definitions, and how it ranks them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cairn_protocol.mcp import is_mcp_tool, mcp_server_of
from pydantic import BaseModel, ConfigDict, Field

from cairn_server.domain import ToolSpec
from cairn_server.tools.base import ServerTool, ToolContext, ToolOutcome, server_tool, tool_error

TOOL_SEARCH = "tool_search"
NAMES_LISTED = 200  # deferred tool names the search tool's description lists
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class ToolArrangement:
    """The tools a request carries, and the MCP tools kept behind `tool_search`."""

    offered: tuple[ToolSpec, ...]
    deferred: tuple[ToolSpec, ...] = ()


def arrange_tools(
    specs: Sequence[ToolSpec], tokens_of: Callable[[ToolSpec], int], limit: int
) -> ToolArrangement:
    """Every tool, unless the MCP tools' schemas cost more than `limit` tokens: then they are
    deferred, and `tool_search` (listing their names) stands in for them."""
    mcp = [spec for spec in specs if is_mcp_tool(spec.name)]
    if not mcp or sum(tokens_of(spec) for spec in mcp) <= limit:
        return ToolArrangement(tuple(specs))
    kept = [spec for spec in specs if not is_mcp_tool(spec.name)]
    return ToolArrangement((*kept, search_spec(mcp)), tuple(mcp))


def search_spec(deferred: Sequence[ToolSpec]) -> ToolSpec:
    """The `tool_search` tool as the model sees it: what it does and which tools it holds."""
    names = [spec.name for spec in deferred]
    listed = ", ".join(names[:NAMES_LISTED])
    more = f" and {len(names) - NAMES_LISTED} more" if len(names) > NAMES_LISTED else ""
    description = (
        "Load the definitions of tools that are available but not loaded yet (the tools of "
        "the user's MCP servers). Search by keywords, or load exact tools with "
        '"select:name1,name2"; each tool found can be called from then on. '
        f"Available: {listed}{more}."
    )
    return ToolSpec(TOOL_SEARCH, description, TOOL_SEARCH_TOOL.spec.parameters)


class ToolSearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(
        min_length=1,
        max_length=500,
        description='Keywords, or "select:name1,name2" for exact tool names.',
    )
    limit: int = Field(default=5, ge=1, le=20, description="Most tools to load.")


async def _search(ctx: ToolContext, args: ToolSearchArgs) -> ToolOutcome:
    if not ctx.deferred:
        return tool_error("no tools are deferred in this run; every tool is already loaded")
    found = find_tools(ctx.deferred, args.query, args.limit)
    if not found:
        servers = sorted({mcp_server_of(spec.name) or "?" for spec in ctx.deferred})
        return tool_error(
            f"no tool matches {args.query!r}; the deferred tools come from the MCP servers "
            f"{', '.join(servers)}; try other keywords"
        )
    definitions = [
        {"name": spec.name, "description": spec.description, "parameters": spec.parameters}
        for spec in found
    ]
    text = (
        f"Loaded {len(found)} tool(s); call them by name:\n"
        f"{json.dumps(definitions, ensure_ascii=False, indent=1)}"
    )
    return ToolOutcome(text, loaded=tuple(spec.name for spec in found))


def find_tools(deferred: Sequence[ToolSpec], query: str, limit: int) -> list[ToolSpec]:
    """`select:a,b` picks by exact name; keywords rank by how many of them a tool's name
    and description hold (the name counting double)."""
    if query.startswith("select:"):
        wanted = [name.strip() for name in query.removeprefix("select:").split(",")]
        by_name = {spec.name: spec for spec in deferred}
        return [by_name[name] for name in wanted if name in by_name][:limit]
    words = set(_WORD.findall(query.lower()))
    scored = []
    for index, spec in enumerate(deferred):
        name_words = set(_WORD.findall(spec.name.lower()))
        text_words = set(_WORD.findall(spec.description.lower()))
        score = 2 * len(words & name_words) + len(words & text_words)
        if score:
            scored.append((-score, index, spec))
    return [spec for _, _, spec in sorted(scored, key=lambda item: item[:2])[:limit]]


TOOL_SEARCH_TOOL: ServerTool = server_tool(
    TOOL_SEARCH,
    "Load the definitions of tools that are available but not loaded yet.",
    ToolSearchArgs,
    _search,
    "read",
)

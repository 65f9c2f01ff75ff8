"""The context viewer: a conversation's next request, section by section, in tokens.

Owns assembling the report from the compiler's sections without changing any state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from cairn_protocol.mcp import mcp_server_of

from cairn_server.context.compiler import (
    ContextTokens,
    count_context,
)
from cairn_server.context.window import ContextWindow
from cairn_server.domain import ToolSpec


@dataclass(frozen=True)
class ContextView:
    tokens: ContextTokens
    budget: int


async def view_context(window: ContextWindow) -> ContextView:
    """The conversation's next request as it stands, changing nothing; the tools of each MCP
    server are one item (with those deferred behind tool_search, at no tokens)."""
    draft = await window.draft()
    tokens = count_context(draft.compiled)
    sections = [
        replace(section, items=_by_mcp_server(section.items, window.context.deferred))
        if section.name == "tools"
        else section
        for section in tokens.sections
    ]
    return ContextView(replace(tokens, sections=sections), window.budget.tokens)


def _by_mcp_server(
    items: list[tuple[str, int]], deferred: Sequence[ToolSpec]
) -> list[tuple[str, int]]:
    grouped: list[tuple[str, int]] = []
    servers: dict[str, list[int]] = {}
    for name, tokens in items:
        server = mcp_server_of(name)
        if server is None:
            grouped.append((name, tokens))
        else:
            servers.setdefault(server, []).append(tokens)
    for server, counts in servers.items():
        grouped.append((f"mcp {server} ({len(counts)} tools)", sum(counts)))
    waiting: dict[str, int] = {}
    for spec in deferred:
        server = mcp_server_of(spec.name) or "?"
        waiting[server] = waiting.get(server, 0) + 1
    for server, count in waiting.items():
        grouped.append((f"mcp {server} ({count} tools, deferred behind tool_search)", 0))
    return grouped

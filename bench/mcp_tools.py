"""MCP tools: the prompt tokens an MCP server's tool definitions cost, before and after deferral.

Starts the test MCP server (tests/support/mcp_server.py, the SDK's MCPServer) over stdio with
N generated tools through the client's real McpServers, offers its tools to the server's one
registry as a hello would, and counts each tool's definition with the context compiler's
tokenizer: every MCP tool sent, and the same run with the schemas deferred behind
tool_search (what the model then gets: the search tool, listing their names).

    uv run python bench/mcp_tools.py [--tools 50] [--budget 100000] [--share 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from cairn_client.mcp.config import McpServerConfig, McpSetup
from cairn_client.mcp.servers import McpServers
from cairn_protocol import CLIENT_TOOLS
from cairn_protocol.mcp import McpToolOffer, is_mcp_tool
from cairn_server.context.compiler import tool_tokens
from cairn_server.tools.registry import TOOLS
from cairn_server.tools.tool_search import arrange_tools

SERVER = Path(__file__).parents[1] / "tests" / "support" / "mcp_server.py"


async def offers(tools: int) -> list[McpToolOffer]:
    config = McpServerConfig(
        "bench", sys.executable, (str(SERVER), "--tools", str(tools)), start_timeout_s=120
    )
    with tempfile.TemporaryDirectory() as logs:
        servers = McpServers(McpSetup((config,)), Path.cwd(), Path(logs))
        notes = await servers.start()
        try:
            if notes:
                raise SystemExit("; ".join(notes))
            return servers.offers()
        finally:
            await servers.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tools", type=int, default=50)
    parser.add_argument("--budget", type=int, default=100_000)
    parser.add_argument("--share", type=float, default=0.1)
    options = parser.parse_args()
    mcp = asyncio.run(offers(options.tools))
    specs = TOOLS.specs(CLIENT_TOOLS, mcp)
    built_in = sum(tool_tokens(spec) for spec in specs if not is_mcp_tool(spec.name))
    every = sum(tool_tokens(spec) for spec in specs if is_mcp_tool(spec.name))
    deferred = arrange_tools(specs, tool_tokens, 0)  # as when past the share
    search = sum(tool_tokens(spec) for spec in deferred.offered) - built_in
    limit = int(options.budget * options.share)
    defers = every > limit
    print(f"MCP tools offered: {len(mcp)} (built-in tools: {built_in:,} tokens)")
    print(
        f"  every MCP schema sent:      {every:,} tokens ({every / options.budget:.1%} of budget)"
    )
    print(f"  deferred behind tool_search: {search:,} tokens ({search / options.budget:.1%})")
    print(
        f"  one tool loaded on demand:   {max(tool_tokens(s) for s in deferred.deferred):,} tokens"
    )
    print(
        f"  at budget {options.budget:,} and share {options.share:g} (limit {limit:,}): "
        f"{'deferred' if defers else 'all sent'}"
    )


if __name__ == "__main__":
    main()

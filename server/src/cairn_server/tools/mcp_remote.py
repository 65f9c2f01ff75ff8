"""Streamable-HTTP MCP servers an agent's runs call from the server, as server tools.

Owns the servers as runs reach them (headers opened and resolved by mcp_headers), listing a
server's tools (cached for a minute per configuration), turning each into a
`ServerTool` named `mcp__<server>__<tool>` that the one registry dispatches, and one call
within the server's timeout: arguments checked against its schema, the result redacted and
capped, every failure one line for the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cairn_protocol.mcp import (
    DESCRIPTION_LIMIT,
    check_arguments,
    describe_failure,
    mcp_tool_name,
    result_text,
    schema_problem,
)
from cairn_protocol.redaction import redact, redaction_note
from pydantic import BaseModel, ConfigDict

from cairn_server.domain import ToolSpec
from cairn_server.errors import CairnServerError
from cairn_server.storage.models import AgentMcpServer
from cairn_server.tools.base import ServerTool, ToolContext, ToolOutcome, tool_error
from cairn_server.tools.mcp_headers import HeaderKeyError, HeaderReferenceError, McpHeaders

log = logging.getLogger(__name__)
logging.getLogger("mcp").setLevel(logging.CRITICAL)  # failures are told to the model instead
LIST_TTL_S = 60.0
LIST_TIMEOUT_S = 15.0
TOOLS_PER_SERVER = 300


class InvalidServerNameError(CairnServerError, ValueError):
    """An MCP server's name that would make its tools' names ambiguous."""


@dataclass(frozen=True)
class RemoteServer:
    """One configured server, its headers opened and resolved (or why they cannot be)."""

    name: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    timeout_s: float = 60.0
    problem: str | None = None  # its headers cannot be sent: nothing is asked of it

    @property
    def key(self) -> str:
        text = json.dumps([self.name, self.url, self.headers, self.timeout_s, self.problem])
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Listing:
    """A server's tools as listed, or why it could not be."""

    tools: tuple[ServerTool, ...] = ()
    problem: str | None = None


class McpArguments(BaseModel):
    """Any object: an MCP tool's arguments are checked against its own JSON Schema."""

    model_config = ConfigDict(extra="allow")


class RemoteMcp:
    """The agents' HTTP MCP servers' tools, listed at most once a minute per configuration."""

    def __init__(self, headers: McpHeaders) -> None:
        self.headers = headers  # how their headers are sealed at rest and resolved to send
        self._listings: dict[str, tuple[float, Listing]] = {}

    def server(self, row: AgentMcpServer) -> RemoteServer:
        """The stored server with the headers to send (opened, `${NAME}` resolved now); one
        whose headers cannot be has the problem instead, and is never reached."""
        try:
            headers = self.headers.resolve(row.name, row.headers)
        except (HeaderKeyError, HeaderReferenceError) as exc:
            return RemoteServer(row.name, row.url, (), row.timeout_s, problem=str(exc))
        return RemoteServer(row.name, row.url, tuple(sorted(headers.items())), row.timeout_s)

    async def listings(self, servers: Sequence[RemoteServer]) -> dict[str, Listing]:
        """Each server's tools (or problem), listed now unless a recent listing is kept."""
        results = await asyncio.gather(*(self._listing(server) for server in servers))
        return {server.name: listing for server, listing in zip(servers, results, strict=True)}

    def cached_tools(self, servers: Sequence[RemoteServer]) -> list[ServerTool]:
        """The tools of the servers listed recently, without reaching any (a context report)."""
        return [
            tool
            for server in servers
            if server.key in self._listings
            for tool in self._listings[server.key][1].tools
        ]

    async def _listing(self, server: RemoteServer) -> Listing:
        if server.problem is not None:
            return Listing(problem=server.problem)
        kept = self._listings.get(server.key)
        if kept is not None and kept[0] > time.monotonic():
            return kept[1]
        try:
            listing = await asyncio.wait_for(_list(server), LIST_TIMEOUT_S)
        except TimeoutError:
            listing = Listing(problem=f"it did not list its tools within {LIST_TIMEOUT_S:g} s")
        except Exception as exc:  # noqa: BLE001 - any failure is this server's, told once
            listing = Listing(problem=describe_failure(exc))
        if listing.problem is not None:
            log.warning("MCP server %s (%s): %s", server.name, server.url, listing.problem)
        self._listings[server.key] = (time.monotonic() + LIST_TTL_S, listing)
        return listing


def _client(server: RemoteServer) -> Any:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers=dict(server.headers), timeout=server.timeout_s)
    return Client(streamable_http_client(server.url, http_client=http), cache=None)


async def _list(server: RemoteServer) -> Listing:
    tools: list[ServerTool] = []
    async with _client(server) as client:
        cursor: str | None = None
        while len(tools) < TOOLS_PER_SERVER:
            page = await client.list_tools(cursor=cursor)
            tools += [tool for tool in (_as_tool(server, t) for t in page.tools) if tool]
            cursor = page.next_cursor
            if not cursor:
                break
    return Listing(tuple(tools[:TOOLS_PER_SERVER]))


def _as_tool(server: RemoteServer, listed: Any) -> ServerTool | None:
    schema = listed.input_schema
    problem = schema_problem(schema)
    if problem is not None:
        log.info("MCP server %s: tool %r left out: %s", server.name, listed.name, problem)
        return None
    name = mcp_tool_name(server.name, listed.name)
    description = (listed.description or listed.title or "")[:DESCRIPTION_LIMIT]

    async def run(ctx: ToolContext, args: McpArguments) -> ToolOutcome:
        return await call_remote(server, listed.name, name, schema, args.model_dump())

    return ServerTool(ToolSpec(name, description, schema), McpArguments, run, "other")


async def call_remote(
    server: RemoteServer, tool: str, name: str, schema: dict[str, Any], arguments: dict[str, Any]
) -> ToolOutcome:
    """One call within the server's timeout; the model gets the redacted, capped text."""
    problem = check_arguments(name, schema, arguments)
    if problem is not None:
        return tool_error(problem)
    where = f"MCP server {server.name}, tool {tool}"
    try:
        result = await asyncio.wait_for(_call(server, tool, arguments), server.timeout_s)
    except TimeoutError:
        return tool_error(f"{where}: no answer within {server.timeout_s:g} s; abandoned")
    except Exception as exc:  # noqa: BLE001 - every failure is one line for the model
        return tool_error(f"{where}: {describe_failure(exc)}")
    text, found = redact(result_text(result))
    if found:
        text = f"{text}\n{redaction_note(found)}"
    if result.is_error:
        return tool_error(f"{where} reported an error: {text}")
    return ToolOutcome(text)


async def _call(server: RemoteServer, tool: str, arguments: dict[str, Any]) -> Any:
    async with _client(server) as client:
        return await client.call_tool(tool, arguments, read_timeout_seconds=server.timeout_s)

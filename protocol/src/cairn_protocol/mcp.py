"""MCP tools on the wire: how a client names the tools of its MCP servers and offers them.

Owns the naming scheme (`mcp__<server>__<tool>`, which no built-in tool can take), the limits
on an offered tool, and the `McpToolOffer` a hello carries for each.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MCP_PREFIX = "mcp__"
SEPARATOR = "__"
# Providers accept tool names of [A-Za-z0-9_-]{1,64}; built-in names never contain "__".
TOOL_NAME_LIMIT = 64
# A server's name: letters, digits, "-" and single "_" (a "__" would make names ambiguous).
SERVER_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]|_(?!_)){0,29}$")
MCP_TOOL_NAME = re.compile(r"^mcp__[A-Za-z0-9_-]{1,59}$")
DESCRIPTION_LIMIT = 2_000  # characters of a tool's description kept
SCHEMA_LIMIT = 20_000  # characters of a tool's input schema (JSON); a larger one is left out
TOOLS_PER_HELLO = 1_000


def is_mcp_tool(name: str) -> bool:
    """Whether `name` is an MCP tool's name in the `mcp__<server>__<tool>` scheme."""
    return MCP_TOOL_NAME.fullmatch(name) is not None


def mcp_server_of(name: str) -> str | None:
    """The server part of an MCP tool's name; None for any other name."""
    if not is_mcp_tool(name):
        return None
    server, separator, _ = name.removeprefix(MCP_PREFIX).partition(SEPARATOR)
    return server if separator else None


def mcp_tool_name(server: str, tool: str) -> str:
    """The name the model sees for `tool` of `server`: characters providers refuse become
    "_", and a name past 64 characters is cut and made unique by a short hash of the whole."""
    safe_tool = re.sub(r"[^A-Za-z0-9_-]", "_", tool) or "_"
    name = f"{MCP_PREFIX}{server}{SEPARATOR}{safe_tool}"
    if len(name) <= TOOL_NAME_LIMIT and safe_tool == tool:
        return name
    digest = hashlib.sha256(tool.encode()).hexdigest()[:8]
    return f"{name[: TOOL_NAME_LIMIT - 9]}_{digest}"


class McpToolOffer(BaseModel):
    """One tool of one of the client's MCP servers, as the model is offered it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=MCP_TOOL_NAME.pattern, description="mcp__<server>__<tool>")
    server: str = Field(min_length=1, max_length=30)
    tool: str = Field(min_length=1, max_length=200, description="The tool's name on its server.")
    description: str = Field(default="", max_length=DESCRIPTION_LIMIT)
    input_schema: dict[str, Any] = Field(description="JSON Schema of the arguments (an object).")

    @field_validator("server")
    @classmethod
    def _server_name(cls, server: str) -> str:
        if not SERVER_NAME.fullmatch(server):
            raise ValueError("a server's name is letters, digits, '-' and single '_'")
        return server

    @field_validator("input_schema")
    @classmethod
    def _object_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        if schema.get("type") != "object":
            raise ValueError('the input schema must have "type": "object"')
        return schema

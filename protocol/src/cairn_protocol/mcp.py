"""MCP tools on the wire: how a client names the tools of its MCP servers and offers them.

Owns the naming scheme (`mcp__<server>__<tool>`, which no built-in tool can take), the limits
on an offered tool, the `McpToolOffer` a hello carries for each, and what both sides make of a
call (arguments checked against the schema, the result's text, a failure in one line).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cairn_protocol.validation import validation_problems

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


# --------------------------------------------------------------------------- calls

RESULT_LIMIT = 30_000  # characters of a result the model is given (as a shell command's output)


def check_arguments(name: str, schema: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    """Why `arguments` do not fit the tool's input schema, in one line; None when they do."""
    import jsonschema  # type: ignore[import-untyped]  # the mcp SDK's; only MCP users load it

    try:
        jsonschema.validate(arguments, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(part) for part in exc.absolute_path)
        at = f" at {where}" if where else ""
        return f"invalid arguments for {name}{at}: {short(exc.message)}"
    except jsonschema.SchemaError as exc:
        return f"{name} has an invalid input schema: {short(exc.message)}"
    return None


def schema_problem(schema: Any) -> str | None:
    """Why a tool's input schema cannot be offered (providers refuse a request holding one
    that is not a valid JSON Schema object, or is too large); None when it can."""
    import jsonschema

    if not isinstance(schema, dict) or schema.get("type") != "object":
        return 'its input schema is not a JSON Schema with "type": "object"'
    if len(json.dumps(schema)) > SCHEMA_LIMIT:
        return f"its input schema is over {SCHEMA_LIMIT:,} characters"
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"its input schema is invalid: {short(exc.message)}"
    return None


def result_text(result: Any) -> str:
    """The text the model is given of an MCP CallToolResult (read by its fields): text parts
    joined, other parts as one-line placeholders, capped at RESULT_LIMIT characters."""
    parts: list[str] = []
    for item in result.content or ():
        kind = getattr(item, "type", "")
        if kind == "text":
            parts.append(item.text)
        elif kind in ("image", "audio"):
            size = len(item.data) * 3 // 4
            parts.append(f"[{kind} {item.mime_type}, {size:,} bytes, not shown]")
        elif kind == "resource":
            resource = item.resource
            text = getattr(resource, "text", None)
            parts.append(text if text is not None else f"[binary resource {resource.uri}]")
        elif kind == "resource_link":
            parts.append(f"[resource {item.uri}]")
        else:
            parts.append(f"[{kind or 'unknown'} content, not shown]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return clip("\n".join(parts))


def clip(text: str, limit: int = RESULT_LIMIT) -> str:
    """`text`, with its middle cut past `limit` characters."""
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[… {cut:,} characters cut …]\n{text[-half:]}"


def describe_failure(exc: BaseException) -> str:
    """One line for the model on why an MCP call failed."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe_failure(inner) for inner in exc.exceptions)
    if isinstance(exc, ValidationError):
        return f"its answer does not fit the MCP schema: {short(validation_problems(exc))}"
    if "Connection closed" in str(exc):
        return "the server closed the connection (it may have crashed)"
    return short(str(exc) or type(exc).__name__)


def short(text: str, limit: int = 300) -> str:
    """`text` on one line, cut at `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"

"""The context compiler: what the model is sent for one step of a run.

Owns the instructions text, the tool list offered to the model, and the order of sections.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cairn_protocol import CLIENT_TOOLS

from cairn_server.providers.base import ModelMessage, ModelRequest, ToolSpec

INSTRUCTIONS = """\
You are Cairn, a coding agent working in the user's repository "{workspace}".
You reach the repository only through tools, which run on the user's machine after the
user's policy or the user approves them. Paths are relative to the repository root.
Work like a careful senior engineer: look before you change (grep, glob, read), make the
smallest correct edit, and say briefly what you did. If a tool call is denied, respect the
reason you are given and adapt; never retry the same call unchanged."""


@dataclass(frozen=True)
class AgentContext:
    workspace_name: str
    client_tools: Sequence[str]
    server_tools: Sequence[ToolSpec]


def client_tool_specs(offered: Iterable[str]) -> list[ToolSpec]:
    """Specs of the client tools the connected client offers, in a stable order."""
    wanted = set(offered)
    return [
        ToolSpec(name, tool.description, tool.parameters_schema())
        for name, tool in CLIENT_TOOLS.items()
        if name in wanted
    ]


def compile_request(context: AgentContext, messages: Sequence[ModelMessage]) -> ModelRequest:
    """Sections in a fixed order: instructions, tool schemas, messages."""
    return ModelRequest(
        system=INSTRUCTIONS.format(workspace=context.workspace_name),
        messages=list(messages),
        tools=[*client_tool_specs(context.client_tools), *context.server_tools],
    )

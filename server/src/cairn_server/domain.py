"""The provider-neutral conversation: messages, tool calls, tool specs and model requests.

Owns the shapes every layer shares (storage, memory, context, runtime, providers) and the
role and stop-reason literals; it imports nothing from cairn_server (only the protocol's literals).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, get_args

from cairn_protocol.messages import ChatRole
from cairn_protocol.rest import MessageRole as PublicMessageRole

# The roles are the protocol's: a role the model sees, and a stored message's role, which
# may also be an event (a note from the system, such as a memory change made elsewhere, sent
# to the model as a user message).
MessageRole = ChatRole
StoredRole = PublicMessageRole
MESSAGE_ROLES: tuple[MessageRole, ...] = get_args(MessageRole)
STORED_ROLES: tuple[StoredRole, ...] = get_args(StoredRole)
# How a model's answer ended, in every provider's terms.
ModelStopReason = Literal["end_turn", "tool_use", "max_tokens", "other"]


@dataclass(frozen=True)
class MalformedArguments:
    """Tool-call arguments that are not one JSON object; `problem` is told to the model."""

    problem: str


def _parse_arguments(tool: str, text: str) -> dict[str, Any] | MalformedArguments:
    """The model's argument text as an object (empty text is `{}`), or what is wrong with it."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        return MalformedArguments(
            f"your arguments for {tool} are not valid JSON ({exc.msg} at char {exc.pos}); "
            "send the call again with one JSON object matching the schema"
        )
    if not isinstance(value, dict):
        return MalformedArguments(f"arguments for {tool} must be a JSON object")
    return value


@dataclass(frozen=True)
class ToolCall:
    """A tool call as the model made it. `arguments` is the raw JSON text it sent (stored and
    sent back to providers as it is); `parsed` is that text parsed once, here."""

    id: str
    name: str
    arguments: str
    parsed: dict[str, Any] | MalformedArguments = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parsed", _parse_arguments(self.name, self.arguments))

    @property
    def arguments_object(self) -> dict[str, Any]:
        """The parsed arguments, or `{}` when they are malformed."""
        return self.parsed if isinstance(self.parsed, dict) else {}

    @property
    def arguments_json(self) -> str:
        """The model's own text when it is a JSON object, else `{}` (APIs need an object)."""
        return self.arguments if self.arguments and isinstance(self.parsed, dict) else "{}"


@dataclass(frozen=True)
class ModelMessage:
    """One message of the conversation in provider-neutral form.

    user: `content`. assistant: `content` and optional `tool_calls`.
    tool: `content` is the result, `tool_call_id` names the call, `is_error` marks failures.
    `note`: a user message the system wrote (a memory change, a late result), not the person.
    """

    role: MessageRole
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    is_error: bool = False
    note: bool = False


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]

    @cached_property
    def definition(self) -> str:
        """The definition as compact JSON, what its tokens are counted on (made once: a
        request is counted at every step)."""
        return json.dumps(
            {"name": self.name, "description": self.description, "parameters": self.parameters},
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class ModelRequest:
    system: str
    messages: list[ModelMessage]
    tools: list[ToolSpec] = field(default_factory=list)
    max_output_tokens: int = 4096

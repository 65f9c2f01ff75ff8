"""The context compiler: what the model is sent for one step of a run, section by section.

Owns the instructions text, the order of sections and their token counts (the context
viewer); which tools a run offers is the tool registry's to say (cairn_server.tools).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cairn_server.context.memory_view import MemorySections, split_blocks
from cairn_server.context.tokens import count_tokens, tokenizer
from cairn_server.context.wellformed import well_formed
from cairn_server.domain import ModelMessage, ModelRequest, ToolSpec

INSTRUCTIONS = """\
You are Cairn, a coding agent working in the user's repository "{workspace}".
You reach the repository only through tools, which run on the user's machine after the
user's policy or the user approves them. Paths are relative to the repository root.
Work like a careful senior engineer: look before you change (grep, glob, read), make the
smallest correct edit, and say briefly what you did. If a tool call is denied, respect the
reason you are given and adapt; never retry the same call unchanged.
You remember this repository across conversations through your memory blocks (below),
the record of every conversation (conversation_search) and archival passages
(archival_insert, archival_search)."""

# Shown first when the oldest messages were compacted and the rest starts with no user turn
# (Anthropic requires one first).
COMPACTED_NOTE = "(The earlier part of this conversation is summarised in <summary> above.)"
# Tokens a provider spends on a message's framing (role, separators) and a tool's.
MESSAGE_OVERHEAD = 4
TOOL_OVERHEAD = 8

SECTION_ORDER = (
    "instructions",
    "tools",
    "memory_blocks",
    "memory_metadata",
    "summary",
    "messages",
)


@dataclass(frozen=True)
class AgentContext:
    """What a run is compiled for: the workspace's name, the tools the request carries, and
    the MCP tools kept behind tool_search (not sent until loaded)."""

    workspace_name: str
    tools: Sequence[ToolSpec]
    deferred: Sequence[ToolSpec] = ()

    def with_loaded(self, names: Sequence[str]) -> AgentContext:
        """This context with the deferred tools named `names` sent from now on."""
        wanted = set(names)
        moved = [spec for spec in self.deferred if spec.name in wanted]
        rest = [spec for spec in self.deferred if spec.name not in wanted]
        return AgentContext(self.workspace_name, [*self.tools, *moved], rest)


@dataclass(frozen=True)
class Section:
    name: str
    text: str
    items: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class CompiledContext:
    request: ModelRequest
    sections: list[Section]


def compile_context(
    context: AgentContext,
    memory: MemorySections,
    messages: Sequence[ModelMessage],
    summary: str = "",
) -> CompiledContext:
    """Sections in a fixed order: instructions, tools, memory blocks, memory metadata,
    summary, messages. Everything before the messages stays byte-identical between the
    steps of a conversation until its memory is refrozen."""
    instructions = INSTRUCTIONS.format(workspace=context.workspace_name)
    summary_text = f"<summary>\n{summary}\n</summary>" if summary else ""
    messages = well_formed(messages)
    if summary and messages and messages[0].role != "user":
        messages = [ModelMessage("user", COMPACTED_NOTE), *messages]
    system_parts = [instructions, memory.blocks, memory.metadata, summary_text]
    tools = list(context.tools)
    request = ModelRequest(
        system="\n\n".join(part for part in system_parts if part),
        messages=list(messages),
        tools=tools,
    )
    sections = [
        Section("instructions", instructions),
        Section("tools", "", [(tool.name, _tool_text(tool)) for tool in tools]),
        Section("memory_blocks", *split_blocks(memory.blocks)),
        Section("memory_metadata", memory.metadata),
        Section("summary", summary_text),
        Section("messages", "", [(_item_name(m), _message_text(m)) for m in messages]),
    ]
    return CompiledContext(request, sections)


@dataclass(frozen=True)
class SectionTokens:
    name: str
    tokens: int
    text: str
    items: list[tuple[str, int]]


@dataclass(frozen=True)
class ContextTokens:
    tokenizer: str
    total: int
    sections: list[SectionTokens]


def count_context(compiled: CompiledContext) -> ContextTokens:
    """Tokens per section and per item (tool, message, with its framing), with the
    tokenizer's name."""
    sections: list[SectionTokens] = []
    for section in compiled.sections:
        items = _item_tokens(section)
        tokens = count_tokens(section.text) + sum(tokens for _, tokens in items)
        text = "\n\n".join(part for part in (section.text, *(t for _, t in section.items)) if part)
        sections.append(SectionTokens(section.name, tokens, text, items))
    return ContextTokens(tokenizer().name, sum(s.tokens for s in sections), sections)


def total_tokens(compiled: CompiledContext) -> int:
    """`count_context(compiled).total`, without the texts the viewer shows (a step's count)."""
    return sum(
        count_tokens(section.text) + sum(tokens for _, tokens in _item_tokens(section))
        for section in compiled.sections
    )


def _item_tokens(section: Section) -> list[tuple[str, int]]:
    overhead = _OVERHEAD.get(section.name, 0)
    return [(name, count_tokens(text) + overhead) for name, text in section.items]


_OVERHEAD = {"messages": MESSAGE_OVERHEAD, "tools": TOOL_OVERHEAD}


def tool_tokens(tool: ToolSpec) -> int:
    """What one tool's definition adds to a request, framing included."""
    return count_tokens(_tool_text(tool)) + TOOL_OVERHEAD


def message_tokens(message: ModelMessage) -> int:
    """What one message adds to a request, framing included."""
    return count_tokens(_message_text(message)) + MESSAGE_OVERHEAD


def _tool_text(tool: ToolSpec) -> str:
    return tool.definition


def _item_name(message: ModelMessage) -> str:
    """A message's name in the viewer: its role, `event` for a note of the system."""
    return "event" if message.note else message.role


def _message_text(message: ModelMessage) -> str:
    calls = "".join(f"\n{call.name}({call.arguments})" for call in message.tool_calls)
    return message.content + calls

"""The memory edit tools: memory_replace, memory_insert and memory_rethink.

Owns their arguments, descriptions and handlers, and how an edit is answered (a short diff).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from cairn_protocol.tools import ToolArgs
from pydantic import Field

from cairn_server.memory.blocks import Author, StaleBlockError
from cairn_server.memory.edits import MemoryEditError, insert_at, replace_once, short_diff
from cairn_server.storage.repository import NotFoundError
from cairn_server.tools.base import (
    ServerTool,
    ToolContext,
    ToolOutcome,
    redacted_note,
    server_tool,
    tool_error,
)


class BlockEditArgs(ToolArgs, ABC):
    """The arguments of an edit tool: the block, and how its value changes."""

    label: str = Field(description="Block label.")

    @abstractmethod
    def edited(self, value: str) -> str:
        """The block's new value (MemoryEditError when the edit does not apply)."""


class ReplaceArgs(BlockEditArgs):
    old_string: str = Field(description="Exact text now in the block; must occur once.")
    new_string: str = Field(description="Replacement text (may be empty to delete).")

    def edited(self, value: str) -> str:
        return replace_once(self.label, value, self.old_string, self.new_string)


class InsertArgs(BlockEditArgs):
    text: str = Field(description="Text to insert.")
    line: int | None = Field(
        default=None, description="Insert after this line (0 = top); omit to append."
    )

    def edited(self, value: str) -> str:
        return insert_at(self.label, value, self.text, self.line)


class RethinkArgs(BlockEditArgs):
    new_value: str = Field(description="The block's complete new text.")

    def edited(self, value: str) -> str:
        return self.new_value


async def memory_replace(ctx: ToolContext, args: ReplaceArgs) -> ToolOutcome:
    return await _edit(ctx, "memory_replace", args)


async def memory_insert(ctx: ToolContext, args: InsertArgs) -> ToolOutcome:
    return await _edit(ctx, "memory_insert", args)


async def memory_rethink(ctx: ToolContext, args: RethinkArgs) -> ToolOutcome:
    """A whole rewrite is refused if the block changed since this conversation saw it."""
    snapshot = await ctx.memory.snapshots.get(ctx.conversation_id)
    seen = snapshot.seen.get(args.label)
    return await _edit(ctx, "memory_rethink", args, expected_version=seen)


async def _edit(
    ctx: ToolContext, tool: str, args: BlockEditArgs, expected_version: int | None = None
) -> ToolOutcome:
    label = args.label
    author = Author(
        "agent",
        conversation_id=ctx.conversation_id,
        run_id=ctx.run_id,
        tool_call_id=ctx.tool_call_id,
        tool=tool,
    )
    try:
        result = await ctx.memory.blocks.edit(
            ctx.agent_id,
            label,
            lambda block: args.edited(block.value),
            author,
            expected_version=expected_version,
        )
    except StaleBlockError as exc:
        await ctx.memory.snapshots.mark_seen(ctx.conversation_id, {label: exc.current.version})
        return tool_error(
            f"{exc}; nothing was changed. Its current value is:\n{exc.current.value}\n"
            "Rewrite it from this value if you still want to."
        )
    except (MemoryEditError, NotFoundError) as exc:
        return tool_error(str(exc))
    block = result.block
    diff = short_diff(label, result.before, block.value)
    return ToolOutcome(
        f"Block {label!r} is now version {block.version} "
        f"({len(block.value)}/{block.char_limit} chars):\n{diff}"
        + redacted_note(result.secrets_redacted),
        seen_versions={label: block.version},
    )


MEMORY_EDIT_TOOLS: list[ServerTool] = [
    server_tool(
        "memory_replace",
        "Replace text in a memory block; old_string must occur exactly once.",
        ReplaceArgs,
        memory_replace,
        "edit",
    ),
    server_tool(
        "memory_insert",
        "Insert text into a memory block at a line (default: the end).",
        InsertArgs,
        memory_insert,
        "edit",
    ),
    server_tool(
        "memory_rethink",
        "Rewrite a memory block completely, e.g. to reorganise or condense it.",
        RethinkArgs,
        memory_rethink,
        "edit",
    ),
]

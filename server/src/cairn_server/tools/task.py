"""The `task` tool: the agent starts a helper run, a conversation of its own, and reads its answer.

Owns the tool's arguments (validated: the model's input is hostile) and its description; the
runtime (runtime/helpers.py) runs the helper through `ToolContext.helpers`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from cairn_server.domain import ToolSpec
from cairn_server.tools.base import ServerTool, ToolContext, ToolOutcome, tool_error

TASK = "task"
MAX_PROMPT_CHARS = 20_000
MAX_TOOLS = 64

ToolName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TaskArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        min_length=1,
        max_length=MAX_PROMPT_CHARS,
    )
    tools: list[ToolName] | None = Field(default=None, max_length=MAX_TOOLS)
    may_edit: bool = False
    max_steps: int | None = Field(default=None, ge=1, le=1000)
    max_tokens: int | None = Field(default=None, ge=1, le=100_000_000)
    max_seconds: float | None = Field(default=None, gt=0, le=86_400)

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("the prompt is blank; say what the helper must do")
        return prompt


DESCRIPTION = (
    "Run a helper (you, in its own conversation) on one task; returns its final answer. "
    "Several run in parallel."
)


async def _run_task(ctx: ToolContext, args: TaskArgs) -> ToolOutcome:
    if ctx.helpers is None:
        return tool_error("task is not available here: a helper cannot start helpers")
    return await ctx.helpers.run_helper(ctx, args)


# What the model is sent: TaskArgs's fields, without the bounds and null branches pydantic
# would spell out (every request carries it); TaskArgs still checks every call.
PARAMETERS = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "description": "The whole task; it cannot see this chat."},
        "tools": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Default: your read-only tools.",
        },
        "may_edit": {"type": "boolean", "description": "Edit in its own git worktree."},
        "max_steps": {"type": "integer"},
        "max_tokens": {"type": "integer"},
        "max_seconds": {"type": "number"},
    },
    "required": ["prompt"],
    "additionalProperties": False,
}
TASK_TOOL = ServerTool(ToolSpec(TASK, DESCRIPTION, PARAMETERS), TaskArgs, _run_task, "other")

"""Client tool schemas: the arguments of every tool the client runs for the agent.

Owns the argument models and their JSON Schemas, so the server advertises exactly
what the client validates and executes.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cairn_protocol.validation import schema_without_titles, validation_problems

# What a tool does, for the client's policy: reads the workspace, edits files, runs commands.
ToolKind = Literal["read", "edit", "shell", "other"]
# The server tool that reads a web page: the server runs it, and only once the run's client
# approved it (a tool_request with approve_only; its policy's `fetch_url(domain:…)` rules).
FETCH_URL = "fetch_url"


class ToolArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReadArgs(ToolArgs):
    path: str = Field(description="File path, relative to the workspace root.")
    offset: int | None = Field(default=None, ge=1, description="First line to read (1-based).")
    limit: int | None = Field(default=None, ge=1, description="Maximum number of lines.")


class GrepArgs(ToolArgs):
    pattern: str = Field(min_length=1, description="Regular expression (ripgrep syntax).")
    path: str | None = Field(default=None, description="File or folder to search; default: root.")
    glob: str | None = Field(
        default=None, description='Only files matching this glob, e.g. "*.py".'
    )
    ignore_case: bool = False
    context: int | None = Field(default=None, ge=0, le=20, description="Lines around each match.")
    max_results: int | None = Field(default=None, ge=1, description="Maximum matching lines.")


class GlobArgs(ToolArgs):
    pattern: str = Field(min_length=1, description='Glob such as "src/**/*.py".')
    path: str | None = Field(default=None, description="Folder to search in; default: root.")


class EditArgs(ToolArgs):
    path: str
    old_string: str = Field(description="Exact text to replace; must occur exactly once.")
    new_string: str
    replace_all: bool = Field(default=False, description="Replace every occurrence.")


class ApplyPatchArgs(ToolArgs):
    patch: str = Field(min_length=1, description="Unified diff of one or more files.")


class WriteArgs(ToolArgs):
    path: str
    content: str = Field(description="The whole new content of the file.")


class ShellArgs(ToolArgs):
    command: str = Field(min_length=1, description="Command for /bin/sh, run in the root.")
    timeout_s: float | None = Field(default=None, gt=0, le=600, description="Default 120.")
    outside_sandbox: bool = Field(
        default=False,
        description="Run without the sandbox; the user is asked every time. Only when the "
        "sandbox blocked something the task needs.",
    )


class ToolDefinition(BaseModel):
    name: str
    description: str
    args: type[ToolArgs]
    kind: ToolKind

    def parameters_schema(self) -> dict[str, Any]:
        """JSON Schema of the arguments, without pydantic's titles (tokens cost money)."""
        return schema_without_titles(self.args)


CLIENT_TOOLS: dict[str, ToolDefinition] = {
    t.name: t
    for t in (
        ToolDefinition(
            name="read",
            kind="read",
            description="Read a text file. Lines come numbered as `N\\tline`; use offset/limit "
            "for long files.",
            args=ReadArgs,
        ),
        ToolDefinition(
            name="grep",
            kind="read",
            description="Search file contents with ripgrep; respects .gitignore. Returns "
            "`path:line:text` lines.",
            args=GrepArgs,
        ),
        ToolDefinition(
            name="glob",
            kind="read",
            description="List files whose path matches a glob; respects .gitignore.",
            args=GlobArgs,
        ),
        ToolDefinition(
            name="edit",
            description="Replace old_string with new_string in a file. old_string must match "
            "exactly once unless replace_all. Read the file first.",
            args=EditArgs,
            kind="edit",
        ),
        ToolDefinition(
            name="apply_patch",
            description="Apply a unified diff (--- a/path, +++ b/path, @@ hunks) to one or more "
            "files; all or nothing. Use /dev/null to create or delete a file.",
            args=ApplyPatchArgs,
            kind="edit",
        ),
        ToolDefinition(
            name="write",
            description="Create a file or replace its whole content.",
            args=WriteArgs,
            kind="edit",
        ),
        ToolDefinition(
            name="shell",
            kind="shell",
            description="Run a shell command in the workspace root, in a sandbox (workspace "
            "writable, no network); returns exit code, stdout and stderr (truncated).",
            args=ShellArgs,
        ),
    )
}


class ToolArgumentsError(ValueError):
    """The model sent arguments that do not fit the tool; the message is for the model."""


def validate_tool_arguments(tool: str, arguments: dict[str, Any]) -> ToolArgs:
    """Check arguments against the tool's schema, with an error the model can act on."""
    definition = CLIENT_TOOLS.get(tool)
    if definition is None:
        raise ToolArgumentsError(
            f"unknown tool {tool!r}; available: {', '.join(sorted(CLIENT_TOOLS))}"
        )
    try:
        return definition.args.model_validate(arguments)
    except ValidationError as exc:
        raise ToolArgumentsError(invalid_arguments(tool, exc)) from None


def invalid_arguments(tool: str, exc: ValidationError) -> str:
    """What the model is told when its arguments do not fit the tool's model."""
    return f"invalid arguments for {tool}: {validation_problems(exc)}"


_PATCH_HEADER = re.compile(r"^(?:---|\+\+\+) (?:[ab]/)?(\S+)", re.MULTILINE)


def patch_header_paths(patch: str) -> list[str]:
    """The files a unified diff names in its `---`/`+++` headers, each once, in order (never
    /dev/null): what an apply_patch call touches, read without parsing its hunks."""
    return list(dict.fromkeys(p for p in _PATCH_HEADER.findall(patch) if p != "/dev/null"))

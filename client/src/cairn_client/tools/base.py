"""Shared shapes of a client tool call: its preview, its preparation and its outcome.

Owns the types that tools, policy, the TUI and headless mode pass between them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from cairn_protocol import ToolRequest
from cairn_protocol.messages import ToolStatus
from cairn_protocol.tools import ToolArgs

from cairn_client.tools.shell_check import ShellFacts

# Whether a workspace-relative path found by a wide search must be left out of its result.
PathFilter = Callable[[str], bool]


@dataclass(frozen=True)
class FileChange:
    """One file's change: `before` None means create, `after` None means delete.

    `before` is exactly what the preview showed; applying checks the file still holds it.
    """

    path: str  # relative to the workspace root, POSIX separators
    before: str | None
    after: str | None
    mode_from: str | None = None  # a created file takes this file's mode (a rename's source)


@dataclass(frozen=True)
class Preview:
    """What the user is shown before approving: a diff, a command, or a short line."""

    title: str  # e.g. "Edit src/app.py", "Run shell command"
    kind: Literal["diff", "command", "info"]
    body: str  # unified diff text, the exact command, or a one-line description
    language: str | None = None  # syntax for colouring: "diff", "bash", ...
    # Dangers to show prominently (shell: `rm -rf`, force-push, writes outside, ...).
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class McpCall:
    """A call of a tool of one of the client's MCP servers, by the names its server knows."""

    server: str
    tool: str
    arguments: dict[str, Any]

    @property
    def subject(self) -> str:
        """What `mcp(server:tool)` rules match."""
        return f"{self.server}:{self.tool}"


@dataclass(frozen=True)
class WebFetch:
    """A page the server fetches once this client approves (fetch_url): the URL and its host."""

    url: str
    host: str  # lower case, no trailing dot: what `fetch_url(domain:…)` rules match


@dataclass(frozen=True)
class PreparedCall:
    """A validated tool request with everything needed to decide on and run it.

    `error` is set when the request cannot run at all (unknown tool, bad arguments,
    path outside the workspace, edit that does not match): it is answered as an error
    without asking anybody.
    """

    request: ToolRequest
    args: ToolArgs | None
    preview: Preview
    changes: tuple[FileChange, ...] = ()
    error: str | None = None
    # Secret files (workspace-relative) this call would read or change, after the
    # user's allow-list; policy denies such calls.
    secret_paths: tuple[str, ...] = ()
    # For shell: whether it provably only reads, and the workspace files it names.
    shell: ShellFacts | None = None
    # For a tool of an MCP server: which one, with the model's arguments.
    mcp: McpCall | None = None
    # For an approval-only request (the server runs it once approved): the page it fetches.
    web: WebFetch | None = None

    @property
    def tool(self) -> str:
        return self.request.tool


@dataclass(frozen=True)
class ToolOutcome:
    status: ToolStatus
    content: str = ""
    reason: str | None = None
    changed_files: tuple[str, ...] = field(default=())

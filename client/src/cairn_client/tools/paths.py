"""Paths the agent names, resolved on disk and kept inside the workspace.

Owns realpath resolution, the refusal of anything outside the root, and ToolError,
the exception every local tool raises when it cannot do what was asked.
"""

from __future__ import annotations

import os
from pathlib import Path


class ToolError(Exception):
    """A tool could not do what was asked; the message is written for the model."""


class PathOutsideWorkspace(ToolError):
    """A path that resolves (after following symlinks) outside the workspace root."""


def real_root(root: Path) -> Path:
    return Path(os.path.realpath(root))


def resolve_in_workspace(root: Path, path: str) -> Path:
    """The real path of `path` (relative to `root`, or absolute), if it is inside `root`.

    Symlinks are followed first and the result checked, so a link pointing outside is
    refused just like `../x` or `/etc/passwd`. The path need not exist.
    """
    if "\0" in path:
        raise ToolError(f"path {path!r} contains a NUL byte")
    workspace = real_root(root)
    candidate = Path(os.path.expanduser(path)) if path.startswith("~") else Path(path)
    resolved = Path(os.path.realpath(workspace / candidate))
    if resolved != workspace and not resolved.is_relative_to(workspace):
        raise PathOutsideWorkspace(
            f"path {path!r} is outside the workspace {workspace} (it resolves to {resolved}); "
            "only files inside the workspace can be used"
        )
    return resolved


def relative_display(root: Path, path: Path) -> str:
    """`path` relative to the workspace root with POSIX separators; "." for the root."""
    for base in (real_root(root), root):
        if path == base or path.is_relative_to(base):
            relative = path.relative_to(base)
            return relative.as_posix() if relative.parts else "."
    return str(path)

"""Paths the agent names, resolved on disk and kept inside the workspace.

Owns realpath resolution, the refusal of anything outside the root, and ToolError,
the exception every local tool raises when it cannot do what was asked.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cairn_client.errors import CairnError


class ToolError(CairnError):
    """A tool could not do what was asked; the message is written for the model."""


class PathOutsideWorkspace(ToolError):
    """A path that resolves (after following symlinks) outside the workspace root."""


class SpecialFile(ToolError):
    """A device, FIFO or socket: reading one could hang or touch hardware."""


def real_root(root: Path) -> Path:
    return Path(os.path.realpath(root))


def resolve_in_workspace(root: Path, path: str) -> Path:
    """The real path of `path` (relative to `root`, or absolute), if it is inside `root`.

    Symlinks are followed first and the result checked, so a link pointing outside is
    refused just like `../x` or `/etc/passwd`; containment is by path components, so
    `/repo-other` is not inside `/repo`. Devices, FIFOs and sockets are refused. The
    path need not exist.
    """
    if "\0" in path:
        raise ToolError(f"path {path!r} contains a NUL byte; use a plain workspace-relative path")
    workspace = real_root(root)
    candidate = Path(os.path.expanduser(path)) if path.startswith("~") else Path(path)
    resolved = Path(os.path.realpath(workspace / candidate))
    if not resolved.is_relative_to(workspace):
        raise PathOutsideWorkspace(
            f"path {path!r} is outside the workspace {workspace} (it resolves to {resolved}"
            f"{_via_symlink(workspace, candidate, resolved)}); only files inside the workspace "
            "can be used: give a path relative to the workspace root, e.g. 'src/app.py'"
        )
    _refuse_special(path, resolved)
    return resolved


def _via_symlink(workspace: Path, candidate: Path, resolved: Path) -> str:
    lexical = Path(os.path.normpath(workspace / candidate))
    return " through a symlink" if lexical.is_relative_to(workspace) and lexical != resolved else ""


def _refuse_special(asked: str, resolved: Path) -> None:
    try:
        mode = os.stat(resolved).st_mode
    except OSError:
        return  # missing (or unreadable: the tool reports that itself)
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = (
        "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
    )
    raise SpecialFile(
        f"{asked!r} is {kind}, not a regular file; the tools only work on regular files and folders"
    )


def relative_display(root: Path, path: Path) -> str:
    """`path` relative to the workspace root with POSIX separators; "." for the root."""
    for base in (real_root(root), root):
        if path == base or path.is_relative_to(base):
            relative = path.relative_to(base)
            return relative.as_posix() if relative.parts else "."
    return str(path)

"""The workspace the client runs in: its root folder and the identity that names it.

Owns asking git for the root, the root commit and the origin; clones and worktrees
of one repository get one identity, a folder outside git is named by its path.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cairn_protocol import WorkspaceIdentity, normalise_origin

GIT_TIMEOUT_S = 10.0
# Every git the client runs: never prompting, and in English (its output is parsed).
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


@dataclass(frozen=True)
class Workspace:
    root: Path
    identity: WorkspaceIdentity
    in_git: bool = True

    def startup_note(self) -> str | None:
        """What the person must know once, at start, about where Cairn runs."""
        if self.in_git:
            return None
        return (
            f"Workspace: {self.root} is not in a git repository; its agent and memory are "
            "named by this path (moving the folder starts a new agent), and tickets need git"
        )


def detect_workspace(cwd: Path, *, environ: Mapping[str, str]) -> Workspace:
    """The git checkout containing `cwd`, or `cwd` itself when it is not in one.

    Never raises for git trouble (no git, a broken repository, a timeout): whatever
    git cannot tell is left out of the identity. git starts from `environ`, the client's
    environment snapshot.
    """
    top = _git(cwd, "rev-parse", "--show-toplevel", environ=environ)
    root = Path(os.path.realpath(top if top else cwd))
    if top is None:
        return Workspace(root, _identity(root, root_commit=None, origin=None), in_git=False)
    origin = _git(root, "config", "--get", "remote.origin.url", environ=environ)
    return Workspace(
        root,
        _identity(
            root,
            root_commit=_root_commit(root, environ),
            origin=normalise_origin(origin) if origin else None,
        ),
    )


def _root_commit(root: Path, environ: Mapping[str, str]) -> str | None:
    """The first commit; with several roots (merged histories) the smallest hash."""
    listed = _git(root, "rev-list", "--max-parents=0", "HEAD", environ=environ)
    roots = listed.split() if listed else []
    return min(roots) if roots else None


def _identity(root: Path, root_commit: str | None, origin: str | None) -> WorkspaceIdentity:
    return WorkspaceIdentity(
        root_commit=root_commit,
        origin=origin,
        display_name=root.name or str(root),
        path=str(root),
    )


def _git(cwd: Path, *args: str, environ: Mapping[str, str]) -> str | None:
    """Stripped stdout of a git command, or None if it failed in any way."""
    try:
        finished = subprocess.run(
            ["git", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            env={**environ, **GIT_ENV},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if finished.returncode != 0:
        return None
    text = finished.stdout.decode("utf-8", errors="replace").strip()
    return text or None

"""The workspace the client runs in: its root folder and the identity that names it.

Owns asking git for the root, the root commit and the origin; clones and worktrees
of one repository get one identity, a folder outside git is named by its path; and the keys a
folder had before its first commit (kept in the data folder), so its agent moves with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cairn_protocol import WorkspaceIdentity, normalise_origin

from cairn_client.private_files import private_file

GIT_TIMEOUT_S = 10.0
# Every git the client runs: never prompting, and in English (its output is parsed).
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
KEYS_FOLDER = "workspaces"  # in the data folder: the keys each folder had before a commit
MAX_EARLIER_KEYS = 4
# A root commit this much older than the key was first seen still counts (clocks differ).
CLOCK_SLACK_S = 300.0


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


def with_earlier_keys(
    workspace: Workspace, data_dir: Path, *, environ: Mapping[str, str]
) -> Workspace:
    """`workspace` with `identity.moved_from`: the keys its folder was opened under before its
    first commit (its path, its origin), so the server moves that agent to the root commit's
    key instead of starting a new one; and, with an origin, the origin's key (a checkout of
    that remote may have had no commit). A key without a commit is recorded, with when it was
    first seen, for later. A recorded key is offered only for the same folder (not one made
    again at that path) and a root commit made after it was seen, so a repository cloned into
    a reused folder never takes that folder's agent."""
    try:
        folder = workspace.root.stat()
    except OSError:
        return workspace
    folder_id = f"{folder.st_dev}:{folder.st_ino}"
    name = hashlib.sha256(str(workspace.root).encode()).hexdigest()[:16]
    record = data_dir / KEYS_FOLDER / f"{name}.json"
    earlier = _read_keys(record, folder_id)
    identity = workspace.identity
    if not identity.root_commit:
        if identity.key not in earlier:
            earlier[identity.key] = time.time()
            newest = sorted(earlier.items(), key=lambda item: item[1])[-MAX_EARLIER_KEYS:]
            _write_keys(record, folder_id, dict(newest))
        return workspace
    committed = _commit_time(workspace.root, identity.root_commit, environ) if earlier else None
    moved_from = [
        key
        for key, seen in sorted(earlier.items(), key=lambda item: item[1])
        if committed is not None and committed >= seen - CLOCK_SLACK_S
    ]
    origin_key = f"origin:{identity.origin}" if identity.origin else None
    if origin_key is not None and origin_key not in moved_from:
        moved_from.append(origin_key)
    if not moved_from:
        return workspace
    moved = identity.model_copy(update={"moved_from": moved_from})
    return dataclasses.replace(workspace, identity=moved)


def _commit_time(root: Path, commit: str, environ: Mapping[str, str]) -> float | None:
    stamp = _git(root, "log", "-1", "--format=%ct", commit, environ=environ)
    try:
        return float(stamp) if stamp else None
    except ValueError:
        return None


def _read_keys(record: Path, folder_id: str) -> dict[str, float]:
    """The keys recorded for this folder, with when each was first seen; none for another
    folder or an unreadable record."""
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("folder") != folder_id:
        return {}
    keys = data.get("keys")
    if not isinstance(keys, dict):
        return {}
    return {k: float(v) for k, v in keys.items() if isinstance(v, int | float)}


def _write_keys(record: Path, folder_id: str, keys: dict[str, float]) -> None:
    """Replace the record whole (a torn write loses only the record, never the agent)."""
    try:
        partial = private_file(record.with_suffix(f".{os.getpid()}.tmp"))
        partial.write_text(json.dumps({"folder": folder_id, "keys": keys}), encoding="utf-8")
        partial.replace(record)
    except OSError:
        pass  # without the record, the first commit starts a new agent: nothing else breaks


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

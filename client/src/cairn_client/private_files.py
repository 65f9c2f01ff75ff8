"""Files only this user can read: the client's data folder (0700) and what it keeps (0600).

Owns creating them that way and tightening ones left wider: the folder holds the local
token, the call log (tool output), and the embedded server's database and log.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def private_dir(folder: Path) -> Path:
    """`folder`, created if missing, and every file directly in it: owner only."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _owner_only(folder)
    for entry in folder.iterdir():
        if entry.is_file() and not entry.is_symlink():
            _owner_only(entry)
    return folder


def private_file(path: Path) -> Path:
    """`path`, created empty if missing (its folder 0700 if created), owner only (0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    _owner_only(path)
    return path


def _owner_only(path: Path) -> None:
    """Drop the group and other permission bits of `path`, if it has any."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(mode & 0o700)

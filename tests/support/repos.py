"""Real git repositories for tests, made in tmp_path with a fixed author.

Shared by client and end-to-end tests.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# The sample file the end-to-end tests' scripted model edits.
APP_BEFORE = "def total(items):\n    return 1\n"
APP_AFTER = "def total(items):\n    return sum(items)\n"

# Commits need an author; the user's own git config must not leak into the tests.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Cairn Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Cairn Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def run_git(cwd: Path, *args: str) -> str:
    finished = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    if finished.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {finished.stderr.strip()}")
    return finished.stdout.strip()


def make_repo(root: Path, files: dict[str, str]) -> Path:
    """A repository at `root` holding `files`, committed once."""
    root.mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "initial")
    return root

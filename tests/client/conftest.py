"""Shared fixtures for client tests: real git repositories in tmp_path."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

# Commits need an author; the user's own git config must not leak into the tests.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Cairn Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Cairn Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}

GitRunner = Callable[..., str]

REPO_FILES = {
    "src/app.py": "def total(items):\n    return 1\n\n\ndef main():\n    print(total([]))\n",
    "src/util.py": "# TODO: tidy\ndef helper():\n    return 'helper'\n",
    "README.md": "# Demo\n\nA small repository for tests.\n",
    ".gitignore": "build/\n*.log\n",
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
    root.mkdir(parents=True)
    run_git(root, "init", "-q", "-b", "main")
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def git() -> GitRunner:
    """Run git in a folder with a test identity: `git(path, "log", "--oneline")`."""
    return run_git


@pytest.fixture
def new_repo() -> Callable[[Path, dict[str, str]], Path]:
    """Make a committed repository at a path from {relative name: content}."""
    return make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A committed git repository with src/app.py, src/util.py, README.md, .gitignore."""
    return make_repo(tmp_path / "repo", REPO_FILES)

"""Shared fixtures for client tests: real git repositories in tmp_path, a real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_server.api.background import BackgroundServer
from support.repos import make_repo, run_git
from support.servers import Served, cairn_server, sqlite_url

GitRunner = Callable[..., str]

REPO_FILES = {
    "src/app.py": "def total(items):\n    return 1\n\n\ndef main():\n    print(total([]))\n",
    "src/util.py": "# TODO: tidy\ndef helper():\n    return 'helper'\n",
    "README.md": "# Demo\n\nA small repository for tests.\n",
    ".gitignore": "build/\n*.log\n",
}


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


@pytest.fixture
def own_repo(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """Like `repo`, but no other test's repository has the same root commit, so a test that
    shares a server with others still meets an agent (and a conversation) of its own."""
    return make_repo(tmp_path / "repo", {**REPO_FILES, "TEST": request.node.nodeid})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One real server (and fake model) per test module; each test makes its own agent."""
    folder = tmp_path_factory.mktemp("served")
    with FakeModelServer() as fake, cairn_server(sqlite_url(folder), fake) as server:
        yield Served(server.url, fake)


@pytest.fixture
def server(tmp_path: Path, fake_model: FakeModelServer) -> Iterator[BackgroundServer]:
    """A real server of the test's own (a fresh database in tmp_path) on the fake model."""
    with cairn_server(sqlite_url(tmp_path), fake_model) as running:
        yield running

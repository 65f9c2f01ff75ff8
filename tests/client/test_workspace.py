"""Workspace detection: one identity per codebase, whatever the checkout."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from cairn_client.workspace import detect_workspace
from support.settings import environment

GitRunner = Callable[..., str]


@pytest.fixture(autouse=True)
def _no_repository_above_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # tmp_path must not be seen as inside some enclosing repository.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


def test_identity_of_a_repository(repo: Path, git: GitRunner) -> None:
    git(repo, "remote", "add", "origin", "git@github.com:Owner/Demo.git")

    workspace = detect_workspace(repo / "src", environ=environment())

    assert workspace.root == Path(os.path.realpath(repo))
    assert workspace.identity.root_commit == git(repo, "rev-parse", "HEAD")
    assert workspace.identity.origin == "github.com/Owner/Demo"
    assert workspace.identity.display_name == "repo"
    assert workspace.identity.path == str(workspace.root)


def test_two_clones_are_the_same_codebase(repo: Path, git: GitRunner, tmp_path: Path) -> None:
    git(tmp_path, "clone", "-q", str(repo), "first")
    git(tmp_path, "clone", "-q", str(repo), "second")
    (tmp_path / "second" / "new.txt").write_text("more history\n")
    git(tmp_path / "second", "add", "new.txt")
    git(tmp_path / "second", "commit", "-q", "-m", "later commit")

    first = detect_workspace(tmp_path / "first", environ=environment())
    second = detect_workspace(tmp_path / "second", environ=environment())

    assert (
        first.identity.key
        == second.identity.key
        == detect_workspace(repo, environ=environment()).identity.key
    )
    assert first.root != second.root


def test_different_repositories_are_different_codebases(
    tmp_path: Path, new_repo: Callable[[Path, dict[str, str]], Path]
) -> None:
    one = new_repo(tmp_path / "one", {"a.txt": "first project\n"})
    two = new_repo(tmp_path / "two", {"a.txt": "second project\n"})

    assert (
        detect_workspace(one, environ=environment()).identity.key
        != detect_workspace(two, environ=environment()).identity.key
    )


def test_a_worktree_is_the_same_codebase_as_its_main_checkout(
    repo: Path, git: GitRunner, tmp_path: Path
) -> None:
    git(repo, "worktree", "add", "-q", "-b", "feature", str(tmp_path / "feature-tree"))

    worktree = detect_workspace(tmp_path / "feature-tree", environ=environment())

    assert worktree.root == Path(os.path.realpath(tmp_path / "feature-tree"))
    assert worktree.identity.key == detect_workspace(repo, environ=environment()).identity.key


def test_several_root_commits_pick_the_smallest_hash(repo: Path, git: GitRunner) -> None:
    first_root = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "--orphan", "other")
    git(repo, "rm", "-rqf", ".")
    (repo / "other.txt").write_text("unrelated history\n")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-q", "-m", "other root")
    second_root = git(repo, "rev-parse", "HEAD")
    git(repo, "merge", "-q", "--allow-unrelated-histories", "-m", "join", "main")

    identity = detect_workspace(repo, environ=environment()).identity

    assert identity.root_commit == min(first_root, second_root)


def test_an_empty_repository_has_no_root_commit(tmp_path: Path, git: GitRunner) -> None:
    (tmp_path / "fresh").mkdir()
    git(tmp_path / "fresh", "init", "-q")
    git(tmp_path / "fresh", "remote", "add", "origin", "https://example.com/team/fresh.git")

    identity = detect_workspace(tmp_path / "fresh", environ=environment()).identity

    assert identity.root_commit is None
    assert identity.key == "origin:example.com/team/fresh"


def test_a_folder_outside_git_is_named_by_its_path(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (tmp_path / "link").symlink_to(folder)

    workspace = detect_workspace(tmp_path / "link", environ=environment())

    assert workspace.root == Path(os.path.realpath(folder))
    assert workspace.identity.root_commit is None
    assert workspace.identity.origin is None
    assert workspace.identity.key == f"path:{os.path.realpath(folder)}"


def test_without_git_installed_the_path_is_used(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "")

    workspace = detect_workspace(repo / "src", environ=environment())

    assert workspace.root == Path(os.path.realpath(repo / "src"))
    assert workspace.identity.key == f"path:{os.path.realpath(repo / 'src')}"

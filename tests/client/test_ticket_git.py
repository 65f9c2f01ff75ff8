"""The git side of `cairn ticket`: preflight checks, branch and worktree, commit, patch, push."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cairn_client.ticket.git import (
    GitError,
    TicketBranch,
    changed_files,
    check_can_start,
    commit_paths,
    common_git_dir,
    dirty_paths,
    export_patch,
    open_branch,
    origin_url,
    push_branch,
    start_branch,
    tracked_files,
)
from support.repos import GIT_ENV
from support.settings import environment

GitRunner = Callable[..., str]
GIT_IDENTITY_VARIABLES = [key for key in GIT_ENV if key.startswith(("GIT_AUTHOR", "GIT_COMMITTER"))]


@pytest.fixture(autouse=True)
def _no_git_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user, system or environment git identity, and no repository above tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for name in ("GIT_CONFIG_GLOBAL", "EMAIL", *GIT_IDENTITY_VARIABLES):
        monkeypatch.delenv(name, raising=False)


def repo_state(repo: Path, git: GitRunner) -> tuple[str, str, str]:
    """What a failed start must leave as it was: branches, worktrees, the checked-out branch."""
    return (
        git(repo, "branch", "--list", "--format=%(refname)"),
        git(repo, "worktree", "list", "--porcelain"),
        git(repo, "symbolic-ref", "--quiet", "HEAD"),
    )


def refused(
    repo: Path, slug: str = "fix-total", *, worktree: bool = False, allow_dirty: bool = False
) -> str:
    with pytest.raises(GitError) as caught:
        start_branch(repo, slug, worktree=worktree, allow_dirty=allow_dirty, environ=environment())
    message = str(caught.value)
    assert "\n" not in message
    return message


def git_may_fail(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True)


# Preflight: each refusal is one line and creates nothing.


def test_a_folder_outside_git_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()

    assert "not inside a git repository" in refused(plain)
    with pytest.raises(GitError, match="not inside a git repository"):
        check_can_start(plain, "cairn/x", allow_dirty=False, environ=environment())
    assert list(plain.iterdir()) == []


def test_a_repository_without_commits_is_refused(tmp_path: Path, git: GitRunner) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")

    assert "make a first commit" in refused(empty)
    assert git(empty, "branch", "--list") == ""


def test_a_detached_head_is_refused(repo: Path, git: GitRunner) -> None:
    git(repo, "switch", "-q", "--detach")
    before = (git(repo, "branch", "--list"), git(repo, "worktree", "list"))

    assert "switch to a branch first" in refused(repo, worktree=True)
    assert (git(repo, "branch", "--list"), git(repo, "worktree", "list")) == before
    assert not (repo.parent / "repo-cairn-fix-total").exists()


@pytest.mark.parametrize("change", ["staged", "unstaged", "untracked"])
def test_uncommitted_changes_are_refused(repo: Path, git: GitRunner, change: str) -> None:
    if change == "untracked":
        (repo / "notes.txt").write_text("draft\n")
    else:
        (repo / "README.md").write_text("# Changed\n")
    if change == "staged":
        git(repo, "add", "README.md")
    before = repo_state(repo, git)

    message = refused(repo)

    assert message == (
        "the working tree has uncommitted changes (1 file); "
        "commit or stash them, or pass --allow-dirty, or --worktree"
    )
    assert repo_state(repo, git) == before


def test_ignored_files_do_not_count_as_changes(repo: Path, git: GitRunner) -> None:
    (repo / "build").mkdir()
    (repo / "build" / "out.bin").write_text("artefact\n")

    branch = start_branch(repo, "fix-total", environ=environment())

    assert git(repo, "branch", "--show-current") == branch.name == "cairn/fix-total"


def test_the_ticket_file_written_into_the_repo_does_not_count_as_a_change(
    repo: Path, git: GitRunner
) -> None:
    (repo / "TICKET.md").write_text("# Fix total\n")
    (repo / "notes.txt").write_text("draft\n")

    with pytest.raises(GitError, match=r"uncommitted changes \(1 file\)"):
        check_can_start(
            repo,
            "cairn/fix-total",
            allow_dirty=False,
            ignore_untracked=["TICKET.md"],
            environ=environment(),
        )
    (repo / "notes.txt").unlink()
    branch = start_branch(
        repo, "fix-total", ignore_untracked=[str(repo / "TICKET.md")], environ=environment()
    )

    assert git(repo, "branch", "--show-current") == branch.name
    assert (repo / "TICKET.md").read_text() == "# Fix total\n"


def test_an_existing_branch_is_refused_with_how_to_resume(repo: Path, git: GitRunner) -> None:
    git(repo, "branch", "cairn/fix-total")
    before = repo_state(repo, git)

    message = refused(repo)

    assert "already exists" in message
    assert "cairn ticket --resume" in message
    assert "git branch -D cairn/fix-total" in message
    assert repo_state(repo, git) == before


def test_a_branch_in_the_way_of_the_name_is_refused(repo: Path, git: GitRunner) -> None:
    git(repo, "branch", "cairn")
    before = repo_state(repo, git)

    assert "branch cairn is in the way of cairn/fix-total" in refused(repo)
    assert repo_state(repo, git) == before


def test_an_existing_worktree_folder_is_refused(repo: Path, git: GitRunner) -> None:
    taken = repo.parent / "repo-cairn-fix-total"
    taken.mkdir()
    before = repo_state(repo, git)

    assert "already exists" in refused(repo, worktree=True)
    assert repo_state(repo, git) == before
    assert list(taken.iterdir()) == []


@pytest.mark.parametrize("operation", ["merge", "rebase"])
def test_a_merge_or_rebase_in_progress_is_refused(
    repo: Path, git: GitRunner, operation: str
) -> None:
    git(repo, "switch", "-q", "-c", "other")
    (repo / "README.md").write_text("other side\n")
    git(repo, "commit", "-q", "-am", "other side")
    git(repo, "switch", "-q", "main")
    (repo / "README.md").write_text("main side\n")
    git(repo, "commit", "-q", "-am", "main side")
    git_may_fail(repo, operation, "other")
    before = (git(repo, "branch", "--list"), git(repo, "worktree", "list"))

    assert f"a {operation} is in progress" in refused(repo, allow_dirty=True)
    assert (git(repo, "branch", "--list"), git(repo, "worktree", "list")) == before


def test_a_failed_worktree_start_leaves_nothing_behind(repo: Path, git: GitRunner) -> None:
    blocker = repo.parent / "a-file"
    blocker.write_text("not a folder\n")
    before = repo_state(repo, git)

    with pytest.raises(GitError, match="git worktree failed"):
        start_branch(
            repo, "fix-total", worktree=True, worktree_path=blocker / "tree", environ=environment()
        )

    assert repo_state(repo, git) == before
    assert "branch.cairn/" not in git(repo, "config", "--list")


# Starting: branch mode and worktree mode.


def test_branch_mode_switches_head_to_the_new_branch(repo: Path, git: GitRunner) -> None:
    main_sha = git(repo, "rev-parse", "HEAD")

    branch = start_branch(repo / "src", "fix-total", environ=environment())

    assert branch == TicketBranch(
        name="cairn/fix-total",
        workdir=Path(os.path.realpath(repo)),
        repo_root=Path(os.path.realpath(repo)),
        base_commit=main_sha,
        base_branch="main",
        worktree=False,
        environ=environment(),
    )
    assert git(repo, "branch", "--show-current") == "cairn/fix-total"


def test_worktree_mode_starts_from_a_dirty_tree_and_leaves_it_alone(
    repo: Path, git: GitRunner
) -> None:
    (repo / "README.md").write_text("# My unfinished edit\n")
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    (repo / "notes.txt").write_text("draft\n")
    status_before = git(repo, "status", "--porcelain")

    branch = start_branch(repo, "fix-total", worktree=True, environ=environment())

    tree = repo.parent / "repo-cairn-fix-total"
    assert branch.workdir == Path(os.path.realpath(tree))
    assert branch.worktree and branch.base_branch == "main"
    assert git(tree, "branch", "--show-current") == "cairn/fix-total"
    assert git(repo, "branch", "--show-current") == "main"
    assert (repo / "README.md").read_text() == "# My unfinished edit\n"
    assert git(repo, "status", "--porcelain") == status_before
    assert (tree / "README.md").read_text() == "# Demo\n\nA small repository for tests.\n"
    assert not (tree / "notes.txt").exists() and not (tree / "staged.txt").exists()
    assert changed_files(branch) == []


def test_allow_dirty_carries_the_changes_onto_the_branch(repo: Path, git: GitRunner) -> None:
    (repo / "README.md").write_text("# Changed\n")
    (repo / "notes.txt").write_text("draft\n")

    branch = start_branch(repo, "fix-total", allow_dirty=True, environ=environment())

    assert git(repo, "branch", "--show-current") == branch.name
    assert (repo / "README.md").read_text() == "# Changed\n"
    assert changed_files(branch) == ["README.md", "notes.txt"]


# Working on the branch.


def test_changed_files_sees_every_kind_of_change(repo: Path, git: GitRunner) -> None:
    branch = start_branch(repo, "fix-total", environ=environment())
    (repo / "src" / "util.py").write_text("def helper():\n    return 'tidy'\n")
    git(repo, "commit", "-q", "-am", "committed on the branch")
    (repo / "src" / "app.py").write_text("def total(items):\n    return sum(items)\n")
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    (repo / "README.md").unlink()
    (repo / "docs").mkdir()
    (repo / "docs" / "new.md").write_text("untracked\n")
    (repo / "debug.log").write_text("ignored\n")

    assert changed_files(branch) == [
        "README.md",
        "docs/new.md",
        "src/app.py",
        "src/util.py",
        "staged.txt",
    ]


def test_dirty_paths_sees_every_uncommitted_change_but_not_ignored_files(
    repo: Path, git: GitRunner
) -> None:
    (repo / "src" / "app.py").write_text("def total(items):\n    return sum(items)\n")
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    (repo / "src" / "util.py").unlink()
    (repo / "docs").mkdir()
    (repo / "docs" / "new.md").write_text("untracked\n")
    (repo / "debug.log").write_text("ignored\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.bin").write_text("ignored\n")
    git(repo, "mv", "README.md", "READ ME.md")

    assert dirty_paths(repo / "src", environ=environment()) == [
        "READ ME.md",
        "README.md",
        "docs/new.md",
        "src/app.py",
        "src/util.py",
        "staged.txt",
    ]


def test_tracked_files_are_those_of_the_commit_asked_for(repo: Path, git: GitRunner) -> None:
    branch = start_branch(repo, "fix-total", environ=environment())
    (repo / "src" / "util.py").unlink()
    (repo / "new.txt").write_text("new\n")
    commit_paths(branch, ["src/util.py", "new.txt"], "Move things")

    assert tracked_files(branch, branch.base_commit) == {
        ".gitignore",
        "README.md",
        "src/app.py",
        "src/util.py",
    }
    assert tracked_files(branch, "HEAD") == {".gitignore", "README.md", "new.txt", "src/app.py"}


def test_commit_paths_commits_only_the_given_paths(repo: Path, git: GitRunner) -> None:
    (repo / "README.md").write_text("# The developer's own edit\n")
    (repo / "mine.txt").write_text("the developer staged this\n")
    git(repo, "add", "mine.txt")
    branch = start_branch(repo, "fix-total", allow_dirty=True, environ=environment())
    (repo / "src" / "app.py").write_text("def total(items):\n    return sum(items)\n")
    (repo / "src" / "util.py").unlink()
    (repo / "docs").mkdir()
    (repo / "docs" / "total.md").write_text("total() adds up\n")
    (repo / "src" / "__pycache__").mkdir()
    (repo / "src" / "__pycache__" / "app.pyc").write_bytes(b"\x00junk")
    (repo / "test-output.txt").write_text("junk a test command wrote\n")
    ticket_paths = ["docs/total.md", "src/app.py", "src/util.py", "never/existed.txt"]

    sha = commit_paths(branch, ticket_paths, "Fix total")

    assert sha == git(repo, "rev-parse", "HEAD")
    assert git(repo, "show", "--format=", "--name-status", "HEAD").splitlines() == [
        "A\tdocs/total.md",
        "M\tsrc/app.py",
        "D\tsrc/util.py",
    ]
    assert dirty_paths(repo, environ=environment()) == [
        "README.md",
        "mine.txt",
        "src/__pycache__/app.pyc",
        "test-output.txt",
    ]
    assert git(repo, "diff", "--name-only") == "README.md"
    assert git(repo, "diff", "--cached", "--name-only") == "mine.txt"
    assert (repo / "README.md").read_text() == "# The developer's own edit\n"
    assert (repo / "test-output.txt").exists() and (repo / "src/__pycache__/app.pyc").exists()


def test_commit_paths_without_a_change_among_the_paths_commits_nothing(
    repo: Path, git: GitRunner
) -> None:
    branch = start_branch(repo, "fix-total", environ=environment())
    (repo / "junk.txt").write_text("not the ticket's\n")
    (repo / "README.md").write_text("# Changed, then\n")
    git(repo, "add", "README.md")
    (repo / "README.md").write_text("# Demo\n\nA small repository for tests.\n")

    assert commit_paths(branch, [], "Nothing") is None
    assert commit_paths(branch, ["src/app.py", "missing.txt"], "Nothing") is None
    assert commit_paths(branch, ["README.md"], "Changed back") is None
    assert git(repo, "rev-parse", "HEAD") == branch.base_commit
    assert (repo / "junk.txt").exists()


def test_commit_paths_commits_as_cairn_without_an_identity(repo: Path, git: GitRunner) -> None:
    branch = start_branch(repo, "fix-total", environ=environment())
    (repo / "new.txt").write_text("new\n")
    message = "Fix total\n\n#12 asked for a sum."

    commit_paths(branch, ["new.txt"], message)

    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>") == (
        "Cairn <cairn@localhost>|Cairn <cairn@localhost>"
    )
    assert git(repo, "log", "-1", "--format=%B") == message
    assert git(repo, "status", "--porcelain") == ""


def test_commit_paths_uses_the_configured_identity(repo: Path, git: GitRunner) -> None:
    git(repo, "config", "user.name", "Ada")
    git(repo, "config", "user.email", "ada@example.com")
    branch = start_branch(repo, "fix-total", environ=environment())
    (repo / "new.txt").write_text("new\n")

    commit_paths(branch, ["new.txt"], "Add a file")

    assert git(repo, "log", "-1", "--format=%an <%ae>") == "Ada <ada@example.com>"


def test_the_exported_patch_applies_on_a_fresh_clone(
    repo: Path, git: GitRunner, tmp_path: Path
) -> None:
    branch = start_branch(repo, "fix-total", worktree=True, environ=environment())
    (branch.workdir / "src" / "app.py").write_text("def total(items):\n    return sum(items)\n")
    (branch.workdir / "README.md").unlink()
    commit_paths(branch, ["src/app.py", "README.md"], "Fix total")
    (branch.workdir / "new.txt").write_text("second\n")
    commit_paths(branch, ["new.txt"], "Add a file")
    patch = tmp_path / "ticket.patch"

    export_patch(branch, patch)

    git(tmp_path, "clone", "-q", str(repo), "fresh")
    fresh = tmp_path / "fresh"
    git(fresh, "switch", "-q", "-c", "applied", branch.base_commit)
    git(fresh, "am", "-q", str(patch))
    assert git(fresh, "rev-parse", "HEAD^{tree}") == git(
        repo, "rev-parse", f"{branch.name}^{{tree}}"
    )
    assert (
        git(fresh, "log", "--format=%s", f"{branch.base_commit}..HEAD") == "Add a file\nFix total"
    )


def test_export_without_commits_is_refused(repo: Path, tmp_path: Path) -> None:
    branch = start_branch(repo, "fix-total", environ=environment())
    (repo / "new.txt").write_text("not committed\n")

    with pytest.raises(GitError, match="no commits since"):
        export_patch(branch, tmp_path / "ticket.patch")
    assert not (tmp_path / "ticket.patch").exists()


def test_push_sends_the_branch_to_origin_and_tracks_it(
    repo: Path, git: GitRunner, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    branch = start_branch(repo, "fix-total", environ=environment())
    (repo / "new.txt").write_text("new\n")
    sha = commit_paths(branch, ["new.txt"], "Add a file")

    push_branch(branch)

    assert git(remote, "rev-parse", "refs/heads/cairn/fix-total") == sha
    assert git(repo, "rev-parse", "--abbrev-ref", "cairn/fix-total@{upstream}") == (
        "origin/cairn/fix-total"
    )
    assert origin_url(repo, environ=environment()) == str(remote)


def test_push_without_a_remote_says_how_to_add_one(repo: Path) -> None:
    branch = start_branch(repo, "fix-total", environ=environment())

    with pytest.raises(GitError) as caught:
        push_branch(branch)

    assert str(caught.value) == (
        "there is no git remote named origin; add one with git remote add origin <url>"
    )
    assert origin_url(repo, environ=environment()) is None


def test_push_to_a_missing_remote_gives_gits_reason(
    repo: Path, git: GitRunner, tmp_path: Path
) -> None:
    git(repo, "remote", "add", "origin", str(tmp_path / "nowhere.git"))
    branch = start_branch(repo, "fix-total", environ=environment())

    with pytest.raises(GitError) as caught:
        push_branch(branch)

    assert str(caught.value).startswith("git push failed: fatal: ")
    assert "nowhere.git" in str(caught.value) and "\n" not in str(caught.value)


# Resuming.


def test_open_branch_switches_back_to_a_branch_made_here(repo: Path, git: GitRunner) -> None:
    started = start_branch(repo, "fix-total", environ=environment())
    (repo / "new.txt").write_text("new\n")
    commit_paths(started, ["new.txt"], "Add a file")
    git(repo, "switch", "-q", "main")
    (repo / "README.md").write_text("# Moved on\n")
    git(repo, "commit", "-q", "-am", "main moves on")

    opened = open_branch(repo, "cairn/fix-total", environ=environment())

    assert opened == started
    assert git(repo, "branch", "--show-current") == "cairn/fix-total"


def test_open_branch_finds_the_branch_in_its_worktree(repo: Path, git: GitRunner) -> None:
    started = start_branch(repo, "fix-total", worktree=True, environ=environment())

    assert open_branch(repo, "cairn/fix-total", environ=environment()) == started
    assert (
        open_branch(started.workdir, "cairn/fix-total", environ=environment()).workdir
        == started.workdir
    )
    assert git(repo, "branch", "--show-current") == "main"


def test_open_branch_will_not_switch_a_dirty_tree(repo: Path, git: GitRunner) -> None:
    start_branch(repo, "fix-total", environ=environment())
    git(repo, "switch", "-q", "main")
    (repo / "README.md").write_text("# Unsaved\n")

    with pytest.raises(GitError, match="uncommitted changes .* before resuming cairn/fix-total"):
        open_branch(repo, "cairn/fix-total", environ=environment())
    assert git(repo, "branch", "--show-current") == "main"


def test_open_branch_of_a_missing_branch_is_refused(repo: Path) -> None:
    with pytest.raises(GitError, match="there is no branch cairn/nothing"):
        open_branch(repo, "cairn/nothing", environ=environment())


@pytest.mark.parametrize("pruned", [False, True])
def test_open_branch_recreates_a_removed_worktree_and_leaves_the_checkout_alone(
    repo: Path, git: GitRunner, tmp_path: Path, pruned: bool
) -> None:
    started = start_branch(
        repo, "fix-total", worktree=True, worktree_path=tmp_path / "tree", environ=environment()
    )
    (started.workdir / "new.txt").write_text("committed work\n")
    commit_paths(started, ["new.txt"], "Add a file")
    shutil.rmtree(started.workdir)
    if pruned:
        git(repo, "worktree", "prune")

    opened = open_branch(repo, "cairn/fix-total", environ=environment())

    assert opened == started
    assert opened.worktree and opened.workdir == Path(os.path.realpath(tmp_path / "tree"))
    assert (opened.workdir / "new.txt").read_text() == "committed work\n"
    assert git(opened.workdir, "branch", "--show-current") == "cairn/fix-total"
    assert git(repo, "branch", "--show-current") == "main"
    assert not (repo / "new.txt").exists()


def test_open_branch_will_not_recreate_a_worktree_over_another_folder(
    repo: Path, git: GitRunner
) -> None:
    started = start_branch(repo, "fix-total", worktree=True, environ=environment())
    shutil.rmtree(started.workdir)
    started.workdir.mkdir()
    (started.workdir / "other.txt").write_text("someone else's\n")

    with pytest.raises(GitError, match="is in its place; move that away"):
        open_branch(repo, "cairn/fix-total", environ=environment())
    assert git(repo, "branch", "--show-current") == "main"
    assert [path.name for path in started.workdir.iterdir()] == ["other.txt"]


def test_common_git_dir_is_the_main_repositorys_from_any_worktree(
    repo: Path, tmp_path: Path
) -> None:
    branch = start_branch(repo, "fix-total", worktree=True, environ=environment())
    main_git = Path(os.path.realpath(repo / ".git"))

    assert common_git_dir(branch.workdir / "src", environ=environment()) == main_git
    assert common_git_dir(repo, environ=environment()) == main_git
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(GitError, match="not inside a git repository"):
        common_git_dir(outside, environ=environment())

"""The git side of `cairn ticket`: the ticket's branch or worktree, its commit, patch and push.

Owns the checks made before anything is created, undoing a half-made start, and every call
to the real `git` binary on the ticket's behalf, from the client's environment snapshot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cairn_client.errors import CairnError, ExitCode
from cairn_client.workspace import GIT_ENV

GIT_TIMEOUT_S = 30.0
PUSH_TIMEOUT_S = 300.0
BRANCH_PREFIX = "cairn/"
FALLBACK_IDENTITY = ("-c", "user.name=Cairn", "-c", "user.email=cairn@localhost")

# Files in the git folder that mean an operation is half-way, and how to get out of it.
_IN_PROGRESS = {
    "rebase-merge": "a rebase is in progress; finish it (git rebase --continue) "
    "or abort it (git rebase --abort) first",
    "rebase-apply": "a rebase or `git am` is in progress; finish it or abort it "
    "(git rebase --abort / git am --abort) first",
    "MERGE_HEAD": "a merge is in progress; commit it or abort it (git merge --abort) first",
    "CHERRY_PICK_HEAD": "a cherry-pick is in progress; finish it or abort it "
    "(git cherry-pick --abort) first",
    "REVERT_HEAD": "a revert is in progress; finish it or abort it (git revert --abort) first",
    "BISECT_LOG": "a bisect is in progress; end it with git bisect reset first",
}


class GitError(CairnError):
    """str(exc) is ONE line: what is wrong and what to do."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class TicketBranch:
    name: str  # "cairn/<slug>"
    workdir: Path  # where the agent works: the repo root, or the new worktree
    repo_root: Path  # the repository the command ran in
    base_commit: str  # full sha of HEAD when the branch was made
    base_branch: str  # the branch HEAD was on (e.g. "main")
    worktree: bool
    # What its git commands start from: the client's environment snapshot, from its settings.
    environ: Mapping[str, str] = field(kw_only=True, compare=False, repr=False)


def ticket_branch_name(slug: str) -> str:
    return f"{BRANCH_PREFIX}{slug}"


def default_worktree_path(repo_root: Path, slug: str) -> Path:
    """A sibling of the repository: `<parent>/<repo-name>-cairn-<slug>`."""
    return repo_root.parent / f"{repo_root.name}-cairn-{slug}"


def repo_root(repo: Path, *, environ: Mapping[str, str]) -> Path:
    """The top of the working tree containing `repo`; GitError when there is none."""
    return Path(os.path.realpath(_repo_query(repo, "--show-toplevel", environ=environ)))


def common_git_dir(repo: Path, *, environ: Mapping[str, str]) -> Path:
    """The git folder all worktrees of `repo` share (the main checkout's .git); GitError
    when `repo` is not in a repository."""
    found = _repo_query(repo, "--path-format=absolute", "--git-common-dir", environ=environ)
    return Path(os.path.realpath(found))


def _repo_query(repo: Path, *options: str, environ: Mapping[str, str]) -> str:
    """`git rev-parse <options>` in `repo`; GitError saying to use a checkout when it fails."""
    if not repo.is_dir():
        raise GitError(f"{repo} is not a folder; run cairn ticket inside a git checkout")
    answer = _try_git(repo, "rev-parse", *options, environ=environ)
    if answer is None:
        raise GitError(
            f"{repo} is not inside a git repository; run cairn ticket in a git checkout "
            "(or make one with git init)"
        )
    return answer


def check_can_start(
    repo: Path,
    branch: str,
    *,
    environ: Mapping[str, str],
    allow_dirty: bool,
    worktree_path: Path | None = None,
    ignore_untracked: Sequence[str] = (),
) -> None:
    """Every reason starting `branch` in `repo` would fail, as a GitError; creates nothing.

    `worktree_path` (worktree mode), when given, must not exist yet; the tree here may then be
    dirty, as it is left alone. `ignore_untracked` (repo-relative or absolute paths) are
    untracked files that do not make the tree dirty, such as the ticket file itself.
    """
    root = repo_root(repo, environ=environ)
    if _try_git(root, "rev-parse", "--verify", "--quiet", "HEAD", environ=environ) is None:
        raise GitError("the repository has no commits yet; make a first commit, then try again")
    _check_nothing_in_progress(root, environ=environ)
    if _current_branch(root, environ=environ) is None:
        short = _git(root, "rev-parse", "--short", "HEAD", environ=environ)
        raise GitError(f"HEAD is detached (at {short}); switch to a branch first (git switch)")
    if worktree_path is None and not allow_dirty:
        _check_clean(
            root,
            "commit or stash them, or pass --allow-dirty, or --worktree",
            ignore_untracked=ignore_untracked,
            environ=environ,
        )
    _check_branch_is_free(root, branch, environ=environ)
    if worktree_path is not None and (worktree_path.exists() or worktree_path.is_symlink()):
        raise GitError(f"{worktree_path} already exists; remove it or choose another worktree path")


def start_branch(
    repo: Path,
    slug: str,
    *,
    environ: Mapping[str, str],
    worktree: bool = False,
    allow_dirty: bool = False,
    worktree_path: Path | None = None,
    ignore_untracked: Sequence[str] = (),
) -> TicketBranch:
    """Make `cairn/<slug>` from HEAD: switch to it here, or check it out in a new worktree.

    In branch mode uncommitted changes (with allow_dirty) come along; a worktree starts
    from HEAD and leaves this working tree as it is, dirty or not. Undoes itself when a
    step fails. See check_can_start for `ignore_untracked`.
    """
    root = repo_root(repo, environ=environ)
    name = ticket_branch_name(slug)
    path = Path(os.path.abspath(worktree_path or default_worktree_path(root, slug)))
    check_can_start(
        root,
        name,
        allow_dirty=allow_dirty,
        worktree_path=path if worktree else None,
        ignore_untracked=ignore_untracked,
        environ=environ,
    )
    base_commit = _git(root, "rev-parse", "HEAD", environ=environ)
    base_branch = _git(root, "symbolic-ref", "--short", "HEAD", environ=environ)
    try:
        if worktree:
            _git(
                root,
                "worktree",
                "add",
                "--quiet",
                "-b",
                name,
                str(path),
                base_commit,
                environ=environ,
            )
        else:
            _git(root, "switch", "--quiet", "-c", name, environ=environ)
        _git(root, "config", f"branch.{name}.cairnBase", base_branch, environ=environ)
        _git(root, "config", f"branch.{name}.cairnBaseCommit", base_commit, environ=environ)
        if worktree:
            _git(
                root,
                "config",
                f"branch.{name}.cairnWorktree",
                os.path.realpath(path),
                environ=environ,
            )
    except GitError:
        _undo_start(root, name, base_branch, path if worktree else None, environ=environ)
        raise
    return TicketBranch(
        name=name,
        workdir=Path(os.path.realpath(path)) if worktree else root,
        repo_root=root,
        base_commit=base_commit,
        base_branch=base_branch,
        worktree=worktree,
        environ=environ,
    )


def open_branch(repo: Path, name: str, *, environ: Mapping[str, str]) -> TicketBranch:
    """An existing ticket branch, for resuming: where it is checked out, or switched to here.

    A worktree ticket whose worktree folder was removed gets its worktree back, at the path
    it had; the checkout here is never switched to it. Any other branch is switched to here
    only when no working tree has it and this one is clean.
    """
    root = repo_root(repo, environ=environ)
    if not _branch_exists(root, name, environ=environ):
        raise GitError(f"there is no branch {name}; start the ticket again without --resume")
    base_branch, base_commit = _recorded_base(root, name, environ=environ)
    worktrees = _worktrees(root, environ=environ)
    checkout = next((tree for tree in worktrees if tree.branch == name), None)
    recorded_tree = _try_git(root, "config", f"branch.{name}.cairnWorktree", environ=environ)
    if checkout is not None and (checkout.prunable or not checkout.path.is_dir()):
        workdir = _recreate_worktree(
            root, name, Path(recorded_tree or checkout.path), environ=environ
        )
    elif checkout is None and recorded_tree is not None:
        workdir = _recreate_worktree(root, name, Path(recorded_tree), environ=environ)
    elif checkout is None:
        _check_clean(root, f"commit or stash them before resuming {name}", environ=environ)
        _git(root, "switch", "--quiet", name, environ=environ)
        workdir = root
    else:
        workdir = checkout.path
    return TicketBranch(
        name=name,
        workdir=workdir,
        repo_root=root,
        base_commit=base_commit,
        base_branch=base_branch,
        worktree=workdir != worktrees[0].path,
        environ=environ,
    )


def changed_files(branch: TicketBranch) -> list[str]:
    """Paths that differ in the working tree from base_commit, untracked files included."""
    tracked = _git_paths(
        branch.workdir,
        "diff",
        "--name-only",
        "--no-renames",
        "-z",
        branch.base_commit,
        "--",
        environ=branch.environ,
    )
    untracked = _git_paths(
        branch.workdir, "ls-files", "--others", "--exclude-standard", "-z", environ=branch.environ
    )
    return sorted(set(tracked) | set(untracked))


def diff_stat(branch: TicketBranch) -> str:
    """`git diff --stat` of the working tree against base_commit, untracked files listed after
    it; "no changes" when nothing differs."""
    stat = _git(
        branch.workdir,
        "diff",
        "--stat",
        "--no-color",
        branch.base_commit,
        "--",
        environ=branch.environ,
    )
    untracked = _git_paths(
        branch.workdir, "ls-files", "--others", "--exclude-standard", "-z", environ=branch.environ
    )
    lines = [stat] if stat else []
    lines += [f" {path} (new, untracked)" for path in untracked]
    return "\n".join(lines) or "no changes"


def tracked_files(branch: TicketBranch, commit: str) -> set[str]:
    """Every file path in `commit`'s tree (say base_commit: what was tracked at the start)."""
    return set(
        _git_paths(
            branch.workdir, "ls-tree", "-r", "--name-only", "-z", commit, environ=branch.environ
        )
    )


def dirty_paths(repo: Path, *, environ: Mapping[str, str]) -> list[str]:
    """Repo-relative paths, sorted, that are modified, staged, deleted or untracked (and not
    ignored) in the working tree at `repo`; both sides of a rename."""
    return sorted({path for _, paths in _status(repo, environ=environ) for path in paths})


def commit_paths(branch: TicketBranch, paths: Sequence[str], message: str) -> str | None:
    """Commit exactly `paths` (additions, changes, deletions) as they are in the working tree;
    the new sha, or None when none of them differs from HEAD.

    A path may name a folder (every change under it counts). Every other change, staged or
    not, stays uncommitted where it is. Paths that never existed and ignored files are
    skipped. Without a configured user.email the commit is made as Cairn <cairn@localhost>.
    """
    folders = tuple(path.rstrip("/") + "/" for path in paths)
    wanted = set(paths)
    chosen = [
        path
        for path in dirty_paths(branch.workdir, environ=branch.environ)
        if path in wanted or path.startswith(folders)
    ]
    if not chosen:
        return None
    listing = "".join(f"{path}\0" for path in chosen).encode()
    # The commit is built in an index of its own (HEAD plus `chosen`), so whatever the
    # developer staged stays out of it.
    with tempfile.TemporaryDirectory(prefix="cairn-index-") as folder:
        own_index = {"GIT_INDEX_FILE": str(Path(folder) / "index")}
        _git(branch.workdir, "read-tree", "HEAD", env=own_index, environ=branch.environ)
        _stage(branch.workdir, listing, env=own_index, environ=branch.environ)
        unchanged = ("diff-index", "--cached", "--quiet", "HEAD")
        if _run(branch.workdir, *unchanged, env=own_index, environ=branch.environ).returncode == 0:
            return None
        sha = _commit(branch.workdir, message, env=own_index, environ=branch.environ)
    _stage(
        branch.workdir, listing, environ=branch.environ
    )  # the real index agrees with the new HEAD on `chosen`
    return sha


def _stage(
    workdir: Path,
    listing: bytes,
    env: Mapping[str, str] | None = None,
    *,
    environ: Mapping[str, str],
) -> None:
    """Make the index hold the NUL-separated paths as they are in the working tree: added,
    updated, or removed when gone. Paths are taken as they are (no pathspec magic)."""
    _git(
        workdir,
        "update-index",
        "--add",
        "--remove",
        "-z",
        "--stdin",
        input=listing,
        env=env,
        environ=environ,
    )


def _commit(
    workdir: Path, message: str, env: Mapping[str, str] | None = None, *, environ: Mapping[str, str]
) -> str:
    """Commit the index with `message`, as Cairn when no identity is configured; the sha."""
    identity = (
        () if _try_git(workdir, "config", "user.email", environ=environ) else FALLBACK_IDENTITY
    )
    command = ("commit", "--quiet", "--cleanup=whitespace", "--file=-")
    _git(workdir, *identity, *command, input=message.encode(), env=env, environ=environ)
    return _git(workdir, "rev-parse", "HEAD", environ=environ)


def export_patch(branch: TicketBranch, out: Path) -> None:
    """Write the branch's commits since base_commit to `out` as a mailbox for `git am`."""
    span = f"{branch.base_commit}..refs/heads/{branch.name}"
    if _git(branch.workdir, "rev-list", "--count", span, environ=branch.environ) == "0":
        raise GitError(
            f"{branch.name} has no commits since {branch.base_commit[:12]}; nothing to export"
        )
    patch = _run(
        branch.workdir, "format-patch", "--stdout", span, environ=branch.environ, check=True
    ).stdout
    try:
        out.write_bytes(patch)
    except OSError as exc:
        raise GitError(f"cannot write the patch to {out}: {exc.strerror}") from exc


def push_branch(branch: TicketBranch, remote: str = "origin") -> None:
    """`git push -u <remote> <branch>`; GitError with git's own reason when it fails."""
    if _try_git(branch.workdir, "remote", "get-url", remote, environ=branch.environ) is None:
        raise GitError(
            f"there is no git remote named {remote}; add one with git remote add {remote} <url>"
        )
    _run(
        branch.workdir,
        "push",
        "--quiet",
        "-u",
        remote,
        branch.name,
        timeout=PUSH_TIMEOUT_S,
        environ=branch.environ,
        check=True,
    )


def origin_url(repo: Path, *, environ: Mapping[str, str]) -> str | None:
    """The URL of the `origin` remote as configured, or None."""
    return _try_git(repo, "config", "--get", "remote.origin.url", environ=environ)


@dataclass(frozen=True)
class _Worktree:
    path: Path
    branch: str | None
    prunable: bool


def _worktrees(root: Path, *, environ: Mapping[str, str]) -> list[_Worktree]:
    """Every working tree of the repository, the main one first."""
    listing = _git(root, "worktree", "list", "--porcelain", environ=environ)
    trees = []
    for block in listing.split("\n\n"):
        fields = dict(line.partition(" ")[::2] for line in block.splitlines() if line)
        if "worktree" not in fields:
            continue
        ref = fields.get("branch")
        trees.append(
            _Worktree(
                path=Path(os.path.realpath(fields["worktree"])),
                branch=ref.removeprefix("refs/heads/") if ref else None,
                prunable="prunable" in fields,
            )
        )
    return trees


def _recorded_base(root: Path, name: str, *, environ: Mapping[str, str]) -> tuple[str, str]:
    """The branch `name` came from and where it forked from it (now, by merge-base)."""
    base_branch = _try_git(root, "config", f"branch.{name}.cairnBase", environ=environ)
    recorded = _try_git(root, "config", f"branch.{name}.cairnBaseCommit", environ=environ)
    if base_branch is None:
        raise GitError(
            f"{name} was not started by cairn ticket (no branch.{name}.cairnBase in git config); "
            f"start a new ticket, or set it with git config branch.{name}.cairnBase <branch>"
        )
    if _branch_exists(root, base_branch, environ=environ):
        fork = _try_git(
            root, "merge-base", f"refs/heads/{name}", f"refs/heads/{base_branch}", environ=environ
        )
        if fork is not None:
            return base_branch, fork
    if recorded is None:
        raise GitError(
            f"cannot find where {name} started: branch {base_branch} is gone; "
            f"recreate it or set git config branch.{name}.cairnBase to another branch"
        )
    return base_branch, recorded


def _check_nothing_in_progress(root: Path, *, environ: Mapping[str, str]) -> None:
    names = list(_IN_PROGRESS)
    located = _git(
        root, "rev-parse", *(arg for name in names for arg in ("--git-path", name)), environ=environ
    )
    for name, where in zip(names, located.splitlines(), strict=True):
        if (root / where).exists():
            raise GitError(_IN_PROGRESS[name])


def _check_clean(
    root: Path, advice: str, ignore_untracked: Sequence[str] = (), *, environ: Mapping[str, str]
) -> None:
    ignored = {_repo_relative(root, path) for path in ignore_untracked}
    count = sum(
        1
        for code, paths in _status(root, environ=environ)
        if not (code == "??" and paths[0] in ignored)
    )
    if count:
        files = "1 file" if count == 1 else f"{count} files"
        raise GitError(f"the working tree has uncommitted changes ({files}); {advice}")


def _status(cwd: Path, *, environ: Mapping[str, str]) -> list[tuple[str, tuple[str, ...]]]:
    """`git status` as (two-letter code, paths): a rename's new path, then its old one."""
    printed = _run(
        cwd, "status", "--porcelain=v1", "-z", "--untracked-files=all", environ=environ, check=True
    ).stdout
    fields = iter(printed.decode("utf-8", errors="replace").split("\0"))
    entries: list[tuple[str, tuple[str, ...]]] = []
    for entry in fields:
        if not entry:
            continue
        code, path = entry[:2], entry[3:]
        source = next(fields) if "R" in code or "C" in code else ""  # a copy's source is as it was
        entries.append((code, (path, source) if "R" in code else (path,)))
    return entries


def _repo_relative(root: Path, path: str) -> str:
    """`path`, absolute or relative to the repository root, as git prints it."""
    if os.path.isabs(path):
        path = os.path.relpath(os.path.realpath(path), root)
    return Path(path).as_posix()


def _recreate_worktree(root: Path, name: str, path: Path, *, environ: Mapping[str, str]) -> Path:
    """Check `name` out again in a new worktree at `path`, where its removed one was."""
    if path.exists() or path.is_symlink():
        raise GitError(
            f"the worktree of {name} is gone but {path} is in its place; "
            "move that away (or run git worktree prune), then resume again"
        )
    _git(root, "worktree", "prune", environ=environ)
    _git(root, "worktree", "add", "--quiet", str(path), name, environ=environ)
    return Path(os.path.realpath(path))


def _check_branch_is_free(root: Path, branch: str, *, environ: Mapping[str, str]) -> None:
    if _try_git(root, "check-ref-format", "--branch", branch, environ=environ) is None:
        raise GitError(f"{branch} is not a valid branch name; choose a simpler ticket slug")
    refs = _git(
        root, "for-each-ref", "--format=%(refname)", "refs/heads/", environ=environ
    ).splitlines()
    wanted = f"refs/heads/{branch}"
    if wanted in refs:
        raise GitError(
            f"branch {branch} already exists; resume it with cairn ticket --resume "
            f"or delete it with git branch -D {branch}"
        )
    clash = next(
        (ref for ref in refs if wanted.startswith(f"{ref}/") or ref.startswith(f"{wanted}/")), None
    )
    if clash is not None:
        raise GitError(
            f"branch {clash.removeprefix('refs/heads/')} is in the way of {branch}; "
            "rename or delete it (git branch -m / git branch -D)"
        )


def discard_branch(branch: TicketBranch) -> None:
    """Take back a branch (or worktree) that start_branch made, when nothing was done on it."""
    worktree = branch.workdir if branch.worktree else None
    _undo_start(branch.repo_root, branch.name, branch.base_branch, worktree, environ=branch.environ)


def _undo_start(
    root: Path,
    name: str,
    base_branch: str,
    worktree_path: Path | None,
    *,
    environ: Mapping[str, str],
) -> None:
    """Best effort: remove the worktree and branch a failed start made, back on base_branch."""
    if worktree_path is not None:
        _run(root, "worktree", "remove", "--force", str(worktree_path), environ=environ)
        shutil.rmtree(worktree_path, ignore_errors=True)  # checked absent before the start
        _run(root, "worktree", "prune", environ=environ)
    elif _current_branch(root, environ=environ) == name:
        _run(root, "switch", "--quiet", base_branch, environ=environ)
    _run(root, "branch", "--quiet", "-D", name, environ=environ)
    _run(root, "config", "--remove-section", f"branch.{name}", environ=environ)


def _current_branch(root: Path, *, environ: Mapping[str, str]) -> str | None:
    return _try_git(root, "symbolic-ref", "--quiet", "--short", "HEAD", environ=environ)


def _branch_exists(root: Path, name: str, *, environ: Mapping[str, str]) -> bool:
    return (
        _run(
            root, "show-ref", "--verify", "--quiet", f"refs/heads/{name}", environ=environ
        ).returncode
        == 0
    )


def _git(
    cwd: Path,
    *args: str,
    environ: Mapping[str, str],
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Stripped stdout of a git command; GitError with git's reason when it fails."""
    finished = _run(cwd, *args, input=input, env=env, environ=environ, check=True)
    return finished.stdout.decode("utf-8", errors="replace").strip()


def _try_git(cwd: Path, *args: str, environ: Mapping[str, str]) -> str | None:
    """Stripped stdout of a git command, or None when it fails or prints nothing."""
    try:
        return _git(cwd, *args, environ=environ) or None
    except GitError:
        return None


def _git_paths(cwd: Path, *args: str, environ: Mapping[str, str]) -> list[str]:
    """The NUL-separated paths a `-z` git command prints."""
    printed = _run(cwd, *args, environ=environ, check=True).stdout.decode("utf-8", errors="replace")
    return [path for path in printed.split("\0") if path]


def _run(
    cwd: Path,
    *args: str,
    environ: Mapping[str, str],
    input: bytes | None = None,
    timeout: float = GIT_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run git in `cwd`, never prompting; `env` adds to (or overrides) the environment.
    With `check`, a failure is a GitError with git's reason."""
    try:
        finished = subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            timeout=timeout,
            check=False,
            env={**environ, **GIT_ENV, **(env or {})},
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(
            f"git {_command(args)} did not finish within {timeout:.0f}s; try again"
        ) from exc
    except OSError as exc:
        raise GitError(f"cannot run git in {cwd} ({exc.strerror}); is git installed?") from exc
    if check and finished.returncode != 0:
        raise GitError(f"git {_command(args)} failed: {_summary(finished.stderr)}")
    return finished


def _command(args: tuple[str, ...]) -> str:
    """The git subcommand in `args`, past options such as `-c name=value`."""
    return next(arg for arg in args if not arg.startswith("-") and "=" not in arg)


def _summary(stderr: bytes) -> str:
    """The line of git's stderr that says what went wrong: its first error, else its last."""
    lines = [line.strip() for line in stderr.decode("utf-8", errors="replace").splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith(("fatal:", "error:"))]
    if errors:
        return errors[0]
    return lines[-1] if lines else "no reason given"

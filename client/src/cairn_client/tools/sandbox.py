"""The OS sandbox every shell command runs in: bubblewrap on Linux, Seatbelt on macOS.

Owns what a command sees there (workspace writable but for .git/hooks, .git/config and
.cairn/; the rest read-only; credentials and secret files hidden; no network), its
environment, built from an allow-list, and the probe that says whether it can start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import pathspec

from cairn_client.secrets import (
    TOKEN_CONFIG_NAMES,
    scrubbed_environment,
    secret_checker,
)
from cairn_client.tools.search import SECRET_GLOBS, ripgrep_binary

SandboxKind = Literal["bubblewrap", "seatbelt"]
# The user's credentials, relative to the home folder: never visible inside the sandbox.
CREDENTIAL_LOCATIONS: tuple[str, ...] = (
    ".ssh",
    ".aws",
    ".gnupg",
    ".netrc",
    ".docker",
    ".kube",
    ".config/gcloud",
    ".config/gh",
    ".config/hub",
    ".azure",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".pgpass",
    ".my.cnf",
    ".vault-token",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".terraform.d",
    ".local/share/keyrings",
    ".password-store",
)
# Variables a command sees besides those the user names; nothing else of the client's.
ENV_ALLOW_LIST: tuple[str, ...] = ("PATH", "LANG", "LANGUAGE", "TERM", "TZ", "USER", "LOGNAME")
# Keep commands from waiting on a pager or a credential prompt nobody will answer.
NON_INTERACTIVE_ENV: dict[str, str] = {
    "PAGER": "cat",
    "GIT_PAGER": "cat",
    "GIT_TERMINAL_PROMPT": "0",
}
SANDBOX_HOME = "/tmp/cairn-home"
_PROBE_TIMEOUT_S = 10.0
_SECRET_SCAN_TIMEOUT_S = 20.0
# The grep tool's secret globs, and token configs (kept if their content holds tokens).
_SECRET_SCAN_GLOBS: tuple[str, ...] = (*SECRET_GLOBS, *TOKEN_CONFIG_NAMES)
# Installed dependencies and caches: their key-looking files (certifi's cacert.pem, test
# fixtures of packages) are not the user's secrets, and walking them costs most of the scan.
_NOT_SCANNED = (
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "site-packages",
    ".tox",
    ".nox",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".cache",
)
# Git's own identity and settings are useful inside; they hold no credentials by themselves.
_GIT_CONFIG_FILES = (".gitconfig", ".config/git/config", ".config/git/ignore")


class SandboxError(Exception):
    """The sandbox could not be set up for a command; the message says why."""


@dataclass(frozen=True)
class SandboxSettings:
    """The user's `[sandbox]` table in settings.toml."""

    enabled: bool = True
    network: bool = False  # every command may use the network
    network_commands: tuple[str, ...] = ()  # shell patterns (`pip install:*`) that may
    env: tuple[str, ...] = ()  # more variables passed in, by name


@dataclass(frozen=True)
class Launch:
    """How to start one shell command: the program and arguments, and its environment."""

    argv: list[str]
    env: dict[str, str]
    sandboxed: bool


@dataclass
class Sandbox:
    """The sandbox of this client: which kind runs, or why none can."""

    kind: SandboxKind | None
    problem: str | None = None  # why no sandbox can start, said once at start
    settings: SandboxSettings = field(default_factory=SandboxSettings)
    hidden: tuple[Path, ...] = ()  # folders and files never shown (besides credentials)
    home: Path = field(default_factory=Path.home)
    program: str = "bwrap"
    # What commands' environments are picked from (the settings' snapshot at start).
    environ: Mapping[str, str] = field(kw_only=True)

    @property
    def active(self) -> bool:
        return self.kind is not None

    @classmethod
    def detect(
        cls,
        settings: SandboxSettings | None = None,
        hidden: Sequence[Path] = (),
        *,
        environ: Mapping[str, str],
    ) -> Sandbox:
        """Probe for a sandbox that really starts here (not merely an installed program);
        `environ` is the client's environment snapshot, what commands start from."""
        settings = settings or SandboxSettings()

        def found(kind: SandboxKind | None, problem: str | None, program: str = "bwrap") -> Sandbox:
            return cls(kind, problem, settings, tuple(hidden), program=program, environ=environ)

        if not settings.enabled:
            return found(
                None, "the sandbox is turned off in settings.toml ([sandbox] enabled = false)"
            )
        if sys.platform == "darwin":
            seatbelt = shutil.which("sandbox-exec")
            if seatbelt is None:
                return found(None, "sandbox-exec is missing")
            return found("seatbelt", None, seatbelt)
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            return found(
                None, "bubblewrap (bwrap) is not installed; on Debian: apt install bubblewrap"
            )
        failure = _probe_bubblewrap(bwrap)
        return found(None if failure else "bubblewrap", failure, bwrap)

    def launch(
        self,
        root: Path,
        command: str,
        *,
        network: bool = False,
        allowed_secrets: Collection[str] = (),
        withheld: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> Launch:
        """The sandboxed way to run `command` in `root`; SandboxError if none is active.

        `withheld` are gitignore-style patterns (the user's deny and ask rules on reading):
        the files they cover are hidden like secret files, so no command reads them unasked.
        """
        env = self.environment(environ)
        if self.kind == "bubblewrap":
            hidden = secret_files(Path(os.path.realpath(root)), allowed_secrets, withheld)
            argv = self._bubblewrap_argv(root, command, network, hidden)
        elif self.kind == "seatbelt":
            profile = seatbelt_profile(root, self._hidden_paths(), network)
            argv = [self.program, "-p", profile, "/bin/sh", "-c", command]
        else:
            raise SandboxError(self.problem or "no sandbox is active")
        return Launch(argv, env, sandboxed=True)

    def environment(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The allow-listed variables, the ones the user named, a sandboxed HOME."""
        source = self.environ if environ is None else environ
        names = set(ENV_ALLOW_LIST) | set(self.settings.env)
        env = {
            name: value for name, value in source.items() if name in names or name.startswith("LC_")
        }
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env["HOME"] = SANDBOX_HOME if self.kind == "bubblewrap" else str(self.home)
        return {**env, **NON_INTERACTIVE_ENV}

    # ------------------------------------------------------------------ bubblewrap

    def _bubblewrap_argv(
        self, root: Path, command: str, network: bool, secrets: Sequence[Path]
    ) -> list[str]:
        workspace = Path(os.path.realpath(root))
        argv = [self.program, "--die-with-parent", "--unshare-pid", "--unshare-ipc"]
        argv += ["--unshare-uts", "--unshare-cgroup-try"]
        if not network:
            argv.append("--unshare-net")
        argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        argv += ["--dir", SANDBOX_HOME]
        for name in _GIT_CONFIG_FILES:
            source = self.home / name
            if source.is_file():
                argv += ["--ro-bind", str(source), f"{SANDBOX_HOME}/{name}"]
        for writable in _writable_folders(workspace):
            argv += ["--bind", str(writable), str(writable)]
        argv += _read_only_inside(workspace)
        # Hidden last, so no bind above can show them again (a workspace in the home folder).
        argv += _hide([*self._hidden_paths(), *secrets])
        return [*argv, "--chdir", str(workspace), "--", "/bin/sh", "-c", command]

    def _hidden_paths(self) -> list[Path]:
        paths = [self.home / location for location in CREDENTIAL_LOCATIONS]
        return [*paths, *self.hidden]


def unsandboxed_launch(command: str, environ: Mapping[str, str]) -> Launch:
    """/bin/sh on the machine itself: the client's environment (`environ`) less secret-looking
    variables (keys and tokens stay out of whatever the model runs)."""
    env = scrubbed_environment(environ)
    return Launch(["/bin/sh", "-c", command], {**env, **NON_INTERACTIVE_ENV}, sandboxed=False)


@lru_cache(maxsize=4)
def _probe_bubblewrap(program: str) -> str | None:
    """None when bubblewrap can make a sandbox like ours here, else what went wrong."""
    argv = [program, "--die-with-parent", "--unshare-pid", "--unshare-net", "--ro-bind", "/"]
    argv += ["/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--", "/bin/true"]
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=_PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start: {exc}"
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        reason = detail[-1] if detail else f"exit code {done.returncode}"
        return f"bubblewrap cannot make a sandbox here ({reason}; user namespaces refused?)"
    return None


def _writable_folders(workspace: Path) -> list[Path]:
    """The workspace, and the git folders it uses when they live elsewhere (a worktree's)."""
    folders = [workspace]
    for extra in _git_dirs(workspace):
        if not extra.is_relative_to(workspace) and extra.is_dir():
            folders.append(extra)
    return folders


def _git_dirs(workspace: Path) -> list[Path]:
    dot_git = workspace / ".git"
    if dot_git.is_dir() or not dot_git.is_file():
        return [dot_git] if dot_git.is_dir() else []
    try:
        line = dot_git.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return []
    if not line.startswith("gitdir:"):
        return []
    git_dir = Path(os.path.realpath(workspace / line.removeprefix("gitdir:").strip()))
    common = git_dir
    try:
        pointer = (git_dir / "commondir").read_text(encoding="utf-8").strip()
        common = Path(os.path.realpath(git_dir / pointer))
    except OSError:
        pass
    return list(dict.fromkeys([git_dir, common]))


def _read_only_inside(workspace: Path) -> list[str]:
    """Re-mount read-only what steers git and Cairn: hooks, git config, .cairn/."""
    argv: list[str] = []
    for git_dir in _git_dirs(workspace):
        hooks = git_dir / "hooks"
        hooks.mkdir(exist_ok=True)  # else a command could create it and plant a hook
        for path in (hooks, git_dir / "config", git_dir / "info"):
            if path.exists():
                argv += ["--ro-bind", str(path), str(path)]
    cairn = workspace / ".cairn"
    if cairn.is_dir():
        argv += ["--ro-bind", str(cairn), str(cairn)]
    return argv


def _hide(paths: Sequence[Path]) -> list[str]:
    """Mount an empty folder over folders and an empty file over files that exist (through
    links: a link to a secret hides its target)."""
    argv: list[str] = []
    folders: list[Path] = []
    for real in dict.fromkeys(Path(os.path.realpath(path)) for path in paths):
        if any(real.is_relative_to(folder) for folder in folders):
            continue  # already hidden with its folder
        if real.is_dir():
            argv += ["--tmpfs", str(real), "--remount-ro", str(real)]
            folders.append(real)
        elif real.exists():
            argv += ["--ro-bind", "/dev/null", str(real)]
    return argv


def secret_files(
    workspace: Path, allowed: Collection[str] = (), withheld: Sequence[str] = ()
) -> list[Path]:
    """Files in the workspace that may hold secrets (ignored ones too), less the allowed, and
    those the `withheld` patterns (gitignore-style, workspace-relative) cover."""
    argv = [str(ripgrep_binary()), "--files", "--hidden", "--no-ignore", "--no-messages"]
    argv += ["--no-config"]
    for folder in _NOT_SCANNED:
        argv += ["--glob", f"!**/{folder}/"]
    for pattern in (*_SECRET_SCAN_GLOBS, *withheld):
        argv += ["--glob", pattern]
    try:
        done = subprocess.run(
            argv,
            cwd=workspace,
            capture_output=True,
            timeout=_SECRET_SCAN_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"could not list the workspace's secret files: {exc}") from exc
    is_secret = secret_checker(workspace, allowed)
    covered = pathspec.PathSpec.from_lines("gitignore", withheld)
    names = done.stdout.decode("utf-8", errors="surrogateescape").splitlines()
    return [
        workspace / name for name in names if name and (covered.match_file(name) or is_secret(name))
    ]


# --------------------------------------------------------------------------- Seatbelt


def seatbelt_profile(workspace: Path, hidden: Sequence[Path], network: bool) -> str:
    """A macOS sandbox-exec profile with the same shape as the bubblewrap sandbox.

    Written to the documented SBPL rules but untested here (no macOS in CI): writes only in
    the workspace and temporary folders, never to .git/hooks, .git/config or .cairn/;
    credentials unreadable; network only when allowed. No own PID namespace on macOS.
    """
    real = os.path.realpath(workspace)
    lines = ["(version 1)", "(allow default)", "(deny file-write*)"]
    lines.append(
        f'(allow file-write* (subpath "{_sbpl(real)}") (subpath "/private/tmp") '
        '(subpath "/private/var/folders") (literal "/dev/null"))'
    )
    lines.append(
        f'(deny file-write* (subpath "{_sbpl(real)}/.git/hooks") '
        f'(literal "{_sbpl(real)}/.git/config") (subpath "{_sbpl(real)}/.cairn"))'
    )
    for path in hidden:
        lines.append(f'(deny file-read* (subpath "{_sbpl(os.path.realpath(path))}"))')
    if not network:
        lines.append("(deny network*)")
        syslog = '(remote unix-socket (path-literal "/private/var/run/syslog"))'
        lines.append(f"(allow network* {syslog})")
    return "\n".join(lines)


def _sbpl(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')

"""What a shell command would do, judged before it runs, for the approval screen and policy.

Owns the flags for destructive commands and the proof that a command only reads: every
part of it (assignments, expansions, redirections, options, paths) checked, else it asks.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cairn_client.secrets import is_secret_file, is_secret_name
from cairn_client.tools.shell_parse import (
    SHELLS,
    ShellScript,
    SimpleCommand,
    parse_shell,
    unwrapped_commands,
)

_SCRIPT_RUNNERS = SHELLS | {"python", "python3", "perl", "ruby", "node", "sudo"}
_HARMLESS_DEVICES = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})
_WRITERS_LAST_ARG = frozenset({"cp", "mv", "install", "ln", "rsync", "scp"})
_WRITERS_ALL_ARGS = frozenset({"rm", "rmdir", "touch", "mkdir", "tee", "truncate", "shred"})


def describe_command(command: str) -> str:
    """The parsed command for the approval screen: one line per command it runs."""
    script = parse_shell(command)
    if script.errors:
        return "(could not parse: bash would not accept it as written)"
    lines = []
    for simple in script.commands:
        inner = simple.unwrapped()
        line = " ".join(shlex.quote(word.shown) for word in inner.words)
        line += "".join(f" > {shlex.quote(t)}" for t in inner.writes_to)
        line += "".join(f" < {shlex.quote(t)}" for t in inner.reads_from)
        prefix = "| " if simple.piped_into else "$( ) " if simple.nested else ""
        lines.append(f"{prefix}{line}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- destructive


def destructive_reasons(command: str, root: Path | None = None) -> list[str]:
    """Why `command` is dangerous, one short phrase per finding; [] if nothing was found.

    `root` lets relative write targets be checked against the workspace; without it
    only absolute, `~` and leading `..` targets count as outside.
    """
    script = parse_shell(command)
    if script.errors:
        return ["the command could not be parsed (unbalanced quotes?), so it cannot be checked"]
    parsed = unwrapped_commands(script)
    reasons: list[str] = []
    for index, simple in enumerate(parsed):
        reasons += _command_reasons(simple, root)
        if simple.piped_into and simple.name in _SCRIPT_RUNNERS:
            before = parsed[index - 1].name if index else ""
            if before in ("curl", "wget", "fetch"):
                reasons.append(f"pipes a download ({before}) into {simple.name}: runs unseen code")
        for target in simple.writes_to:
            reasons += _redirect_reasons(target, root)
    if re.search(r"(?:\$\(|<\(|`)\s*(?:curl|wget)\b", command) and any(
        simple.name in _SCRIPT_RUNNERS for simple in parsed
    ):
        reasons.append("runs a downloaded script (curl/wget inside a shell): runs unseen code")
    return list(dict.fromkeys(reasons))


def _command_reasons(simple: SimpleCommand, root: Path | None) -> list[str]:
    name, args = simple.name, simple.args
    flags = _short_flags(args)
    reasons: list[str] = []
    if name == "rm" and ({"r", "R"} & flags or "--recursive" in args):
        forced = "f" in flags or "--force" in args
        reasons.append(f"rm {'-rf' if forced else '-r'}: deletes folders recursively")
    if name == "git":
        reasons += _git_reasons(args)
    if name == "find" and ("-delete" in args or {"-exec", "-execdir"} & set(args) and "rm" in args):
        reasons.append("find deletes the files it matches")
    if name in ("chmod", "chown") and ("R" in flags or "--recursive" in args):
        reasons.append(f"{name} -R changes permissions or owners recursively")
    if name == "chmod" and any(re.fullmatch(r"0?777|a\+rwx|o\+w", a) for a in args):
        reasons.append("chmod 777 makes files writable by everyone")
    if name == "dd" and any(a.startswith("of=") for a in args):
        reasons.append("dd writes raw data to " + next(a for a in args if a.startswith("of=")))
    if name.startswith("mkfs") or name in ("fdisk", "wipefs", "parted", "shred"):
        reasons.append(f"{name} destroys data on a disk or file")
    if name in ("shutdown", "reboot", "halt", "poweroff"):
        reasons.append(f"{name} stops the machine")
    if simple.elevated:
        reasons.append("runs as root (sudo)")
    reasons += _outside_write_reasons(simple, root)
    return reasons


def _git_reasons(args: list[str]) -> list[str]:
    sub = next((a for a in args if not a.startswith("-")), "")
    rest = args[args.index(sub) + 1 :] if sub else []
    flags = _short_flags(rest)
    if sub == "push" and (
        "f" in flags
        or any(a.startswith(("--force", "--mirror", "--delete")) for a in rest)
        or any(a.startswith("+") for a in rest)
    ):
        return ["git push --force rewrites history on the remote"]
    if sub == "reset" and "--hard" in rest:
        return ["git reset --hard discards uncommitted changes"]
    if sub == "clean" and ("f" in flags or "--force" in rest):
        return ["git clean -f deletes untracked files"]
    if sub == "checkout" and ("-f" in rest or "--force" in rest or "." in rest):
        return ["git checkout of paths discards uncommitted changes"]
    if sub == "branch" and ("D" in flags or "--delete" in rest and "--force" in rest):
        return ["git branch -D deletes a branch even if it is not merged"]
    if sub == "stash" and rest[:1] in (["drop"], ["clear"]):
        return ["git stash drop/clear deletes stashed changes"]
    return []


def _outside_write_reasons(simple: SimpleCommand, root: Path | None) -> list[str]:
    paths = [a for a in simple.args if not a.startswith("-")]
    if simple.name in _WRITERS_LAST_ARG and len(paths) >= 2:
        targets = paths[-1:]
    elif simple.name in _WRITERS_ALL_ARGS or (simple.name == "sed" and "-i" in simple.args):
        targets = paths
    else:
        return []
    return [
        f"{simple.name} writes outside the workspace ({target})"
        for target in targets
        if _outside(target, root)
    ]


def _redirect_reasons(target: str, root: Path | None) -> list[str]:
    if target in _HARMLESS_DEVICES or target.startswith("&") or target.isdigit():
        return []
    if target.startswith("/dev/"):
        return [f"writes to the device {target}"]
    if _outside(target, root):
        return [f"writes outside the workspace ({target})"]
    return []


def _outside(target: str, root: Path | None) -> bool:
    if target in _HARMLESS_DEVICES:
        return False
    if target.startswith(("/", "~", "$HOME", "${HOME}")):
        if root is None:
            return True
        workspace = os.path.realpath(root)
        real = os.path.realpath(os.path.expanduser(target))
        return not Path(real).is_relative_to(workspace)
    if root is None:
        return os.path.normpath(target).startswith("..")
    workspace = os.path.realpath(root)
    return not Path(os.path.realpath(os.path.join(workspace, target))).is_relative_to(workspace)


def _short_flags(args: list[str]) -> set[str]:
    return {ch for a in args if a.startswith("-") and not a.startswith("--") for ch in a[1:]}


# --------------------------------------------------------------------------- read-only

# Programs that only read, given the option checks below; pagers, `env`, `xargs` and
# anything that runs another program are not among them.
_READ_ONLY = frozenset(
    {"ls", "pwd", "echo", "printf", "wc", "head", "tail", "cat", "rg", "grep", "tree", "file"}
    | {"stat", "du", "df", "which", "type", "true", "basename", "dirname", "realpath", "date"}
    | {"uname", "whoami", "diff", "cut", "uniq", "nl", "fd", "find", "sort", "cmp", "comm"}
    | {"sha256sum", "sha1sum", "md5sum", "git"}
)
# Words that are text, never paths.
_NO_PATH_ARGS = frozenset({"echo", "printf", "true", "pwd", "whoami", "uname", "which", "type"})
_READ_ONLY_GIT = frozenset(
    {"status", "diff", "log", "show", "blame", "ls-files", "rev-parse", "describe", "shortlog"}
)
# Global git options that cannot point git elsewhere or run anything.
_SAFE_GIT_GLOBALS = frozenset({"--no-pager", "-P", "--no-optional-locks", "--literal-pathspecs"})
_FORBIDDEN_OPTIONS: dict[str, frozenset[str]] = {
    "find": frozenset(
        {"-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf"}
        | {"-fls"}
    ),
    "rg": frozenset(
        {"--pre", "--pre-glob", "--search-zip", "-z", "--hidden", "--no-ignore", "-u", "-uu"}
        | {"-uuu", "-L", "--follow"}
    ),
    "grep": frozenset({"-r", "-R", "--recursive", "--dereference-recursive"}),
    "tree": frozenset({"-o", "-R"}),
    "fd": frozenset({"-x", "-X", "--exec", "--exec-batch", "-H", "--hidden", "-L", "--follow"}),
    "sort": frozenset({"-o", "--output", "--compress-program", "-T", "--temporary-directory"}),
    "git": frozenset(
        {"--output", "--no-index", "--ext-diff", "--git-dir", "--work-tree", "--exec-path"}
        | {"--upload-pack", "--receive-pack", "--exec", "--output-directory", "-o"}
    ),
    "date": frozenset({"-s", "--set"}),
}
_GLOB_OK = frozenset({"ls", "find", "wc", "stat", "du", "file", "tree", "fd", "echo"})


@dataclass(frozen=True)
class ShellFacts:
    """What the policy needs to know of a command before it runs: whether it provably only
    reads (and why not), and the workspace files it names (relative real paths), so read
    rules on paths apply to shell too."""

    read_only: bool
    why_not: str | None = None
    paths: tuple[str, ...] = ()


def inspect_command(command: str, root: Path | None = None) -> ShellFacts:
    """Prove that `command` only reads files inside the workspace and names no secret file.

    Every part must be proven: no assignments or expansions, no substitutions, no writing
    redirections, only known readers with options that cannot write, run programs or point
    outside. `root` lets relative paths be resolved; without it only `..`, absolute and `~`
    paths count as outside.
    """
    script = parse_shell(command)
    paths = named_paths(script, root)
    problem = _script_problem(script)
    if problem is None:
        is_secret = _secret_test(root)
        problem = next(
            (p for c in script.commands if (p := _command_problem(c, root, is_secret))), None
        )
    return ShellFacts(problem is None, problem, paths)


def is_read_only(command: str, root: Path | None = None) -> bool:
    return inspect_command(command, root).read_only


def named_paths(script: ShellScript, root: Path | None) -> tuple[str, ...]:
    """Existing workspace files and folders that the line's commands name (as words,
    option values or redirections), as workspace-relative real paths."""
    found: list[str] = []
    for simple in unwrapped_commands(script):
        words = [*simple.args, *simple.reads_from, *simple.writes_to]
        for word in words:
            value = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
            relative = _relative(value, root)
            if relative is not None:
                found.append(relative)
            # `git show HEAD:path` names a file of the history, which may exist no more.
            found += [os.path.normpath(p) for p in _rev_paths(word, simple.name)]
    return tuple(dict.fromkeys(found))


def _script_problem(script: ShellScript) -> str | None:
    if script.errors:
        return "bash would not accept it as written"
    if not script.commands:
        return "it runs no command"
    if script.substitutions:
        return "it substitutes the output of a command"
    if script.expansions:
        return "it expands variables, so what it touches is known only when it runs"
    if script.control or script.background or script.heredocs:
        return "it uses shell constructs beyond a chain or a pipe of commands"
    return None


def _command_problem(
    simple: SimpleCommand, root: Path | None, is_secret: Callable[[str], bool]
) -> str | None:
    if simple.assignments:
        return f"it sets {simple.assignments[0].split('=', 1)[0]} for the command"
    if not simple.words:
        return "a redirection without a command"
    if "/" in simple.words[0].shown or simple.words[0].value is None:
        return f"{simple.words[0].shown} is not a known read-only program"
    name = simple.name
    if name not in _READ_ONLY:
        return f"{name} is not a known read-only program"
    for redirect in simple.redirects:
        if redirect.writes and not redirect.duplicates:
            target = redirect.target.shown if redirect.target else ""
            if target not in _HARMLESS_DEVICES:
                return f"it writes to {target}"
    if not simple.static and not (name in _GLOB_OK and _only_patterns(simple)):
        return "a word of it is only known when it runs"
    problem = _option_problem(simple)
    if problem is not None:
        return problem
    for candidate in _path_candidates(simple):
        problem = _path_problem(candidate, root, is_secret)
        if problem is not None:
            return problem
    return None


def _only_patterns(simple: SimpleCommand) -> bool:
    """Dynamic only through unquoted globs, which match names inside the folder given."""
    return all(word.value is not None for word in simple.words)


def _option_problem(simple: SimpleCommand) -> str | None:
    name, args = simple.name, simple.args
    forbidden = _FORBIDDEN_OPTIONS.get(name, frozenset())
    for arg in args:
        option = arg.split("=", 1)[0]
        if option in forbidden or (name == "git" and option.startswith("-O")):
            return f"{name} {option} can write, run programs or read elsewhere"
    if name == "git":
        return _git_problem(args)
    if name == "uniq" and len([a for a in args if not a.startswith("-")]) > 1:
        return "uniq writes its second file argument"
    return None


def _git_problem(args: list[str]) -> str | None:
    for arg in args:
        if not arg.startswith("-"):
            if arg not in _READ_ONLY_GIT:
                return f"git {arg} is not a read-only git command"
            return None
        if arg not in _SAFE_GIT_GLOBALS:
            return f"git {arg} changes where or how git runs"
    return "git without a command"


def _path_candidates(simple: SimpleCommand) -> list[str]:
    """Arguments and option values that may name files, and input redirections."""
    candidates = list(simple.reads_from)
    if simple.name in _NO_PATH_ARGS:
        return candidates
    for arg in simple.args:
        if arg.startswith("-"):
            if "=" in arg:
                candidates.append(arg.split("=", 1)[1])
            continue
        candidates += [arg, *_rev_paths(arg, simple.name)]
    return candidates


def _rev_paths(arg: str, program: str) -> list[str]:
    """`HEAD:.env` names the file .env to git."""
    if program != "git" or ":" not in arg:
        return []
    return [part for part in arg.split(":")[1:] if part]


def _path_problem(
    candidate: str, root: Path | None, is_secret: Callable[[str], bool]
) -> str | None:
    if candidate in ("", "-"):
        return None
    if _outside(candidate, root):
        return f"it reads {candidate}, outside the workspace"
    if is_secret(candidate) or is_secret_name(candidate.rstrip("*")):
        return f"{candidate} may hold secrets"
    return None


def _relative(candidate: str, root: Path | None) -> str | None:
    """The workspace-relative real path of an existing file or folder, else None."""
    if root is None or not candidate or candidate.startswith("-"):
        return None
    workspace = os.path.realpath(root)
    real = os.path.realpath(os.path.join(workspace, os.path.expanduser(candidate)))
    if real == workspace or not Path(real).is_relative_to(workspace):
        return None
    return Path(real).relative_to(workspace).as_posix() if os.path.exists(real) else None


def _secret_test(root: Path | None) -> Callable[[str], bool]:
    if root is None:
        return lambda path: (
            is_secret_name(path)
            or os.path.basename(path)
            in (
                ".npmrc",
                ".pypirc",
                ".yarnrc.yml",
            )
        )
    base = Path(os.path.realpath(root))
    return lambda path: is_secret_file(base / os.path.expanduser(path))

"""What a shell command would do, judged before it runs, for the approval screen and policy.

Owns parsing a command line into simple commands and redirections, the flags for
destructive ones, and the narrow read-only set that policy may allow without asking.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cairn_client.secrets import is_secret_file, is_secret_name

_OPERATORS = frozenset({"&&", "||", ";", "|", "&", "\n", ";;", "|&", "(", ")"})
_REDIRECTS = frozenset({">", ">>", ">|", "<", "<<", "<<<", "&>", "&>>", "<>", ">&", "<&", "&>&"})
_PREFIXES = frozenset({"sudo", "doas", "nohup", "time", "exec", "command", "nice", "env"})
_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "fish"})
_SCRIPT_RUNNERS = _SHELLS | {"python", "python3", "perl", "ruby", "node", "sudo"}
_HARMLESS_DEVICES = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_GLOB_CHARS = re.compile(r"[*?\[]")
_WRITERS_LAST_ARG = frozenset({"cp", "mv", "install", "ln", "rsync", "scp"})
_WRITERS_ALL_ARGS = frozenset({"rm", "rmdir", "touch", "mkdir", "tee", "truncate", "shred"})


@dataclass
class SimpleCommand:
    """One command of a pipeline or list: its words and where it redirects to."""

    words: list[str] = field(default_factory=list)
    writes_to: list[str] = field(default_factory=list)  # targets of > and >>
    reads_from: list[str] = field(default_factory=list)  # targets of <
    piped_into: bool = False  # its stdin is the previous command's stdout
    elevated: bool = False  # run through sudo or doas

    @property
    def name(self) -> str:
        return os.path.basename(self.words[0]) if self.words else ""

    @property
    def args(self) -> list[str]:
        return self.words[1:]


def parse_command(command: str) -> list[SimpleCommand]:
    """The simple commands of `command` (prefixes like sudo/env and VAR=x dropped).

    Raises ValueError for unbalanced quotes.
    """
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = ""
    commands = [SimpleCommand()]
    pending: str | None = None
    for token in lexer:
        current = commands[-1]
        if pending is not None:
            if not (pending.endswith("&") and token.isdigit() or token == "-"):
                (current.reads_from if pending.startswith("<") else current.writes_to).append(token)
            pending = None
        elif token in _REDIRECTS:
            if current.words and current.words[-1] in ("0", "1", "2"):
                current.words.pop()  # the file descriptor of `2>x` (shlex splits it off)
            pending = token
        elif token in _OPERATORS or set(token) <= set(";&|()"):
            commands.append(SimpleCommand(piped_into=token in ("|", "|&")))
        else:
            current.words.append(token)
    for simple in commands:
        kept = _without_prefixes(simple.words)
        simple.elevated = bool(
            {"sudo", "doas"} & set(simple.words[: len(simple.words) - len(kept)])
        )
        simple.words = kept
    return [c for c in commands if c.words or c.writes_to or c.reads_from]


def _without_prefixes(words: list[str]) -> list[str]:
    index = 0
    while index < len(words) and (
        words[index] in _PREFIXES or _ASSIGNMENT.match(words[index]) or words[index] == "-E"
    ):
        index += 1
    return words[index:]


def describe_command(command: str) -> str:
    """The parsed command for the approval screen: one line per simple command."""
    try:
        parsed = parse_command(command)
    except ValueError as exc:
        return f"(could not parse: {exc})"
    lines = []
    for simple in parsed:
        line = " ".join(shlex.quote(word) for word in simple.words)
        line += "".join(f" > {shlex.quote(t)}" for t in simple.writes_to)
        line += "".join(f" < {shlex.quote(t)}" for t in simple.reads_from)
        lines.append(f"{'| ' if simple.piped_into else ''}{line}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- destructive


def destructive_reasons(command: str, root: Path | None = None) -> list[str]:
    """Why `command` is dangerous, one short phrase per finding; [] if nothing was found.

    `root` lets relative write targets be checked against the workspace; without it
    only absolute, `~` and leading `..` targets count as outside.
    """
    try:
        parsed = parse_command(command)
    except ValueError:
        return ["the command could not be parsed (unbalanced quotes), so it cannot be checked"]
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
    if name in _SHELLS and "-c" in args and args.index("-c") + 1 < len(args):
        reasons += destructive_reasons(args[args.index("-c") + 1], root)
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

_READ_ONLY = frozenset(
    {"ls", "pwd", "echo", "printf", "wc", "head", "tail", "cat", "rg", "grep", "tree", "file"}
    | {"stat", "du", "df", "which", "type", "true", "basename", "dirname", "realpath", "date"}
    | {"uname", "whoami", "diff", "cut", "uniq", "nl", "less", "more", "fd"}
)
_READ_ONLY_GIT = frozenset(
    {"status", "diff", "log", "show", "blame", "ls-files", "rev-parse", "describe", "shortlog"}
)
_FORBIDDEN_FLAGS = {
    "find": {"-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprintf", "-fls"},
    "rg": {"--pre", "--search-zip", "-z", "--hidden", "--no-ignore", "-u", "-uu", "-uuu"},
    "grep": {"-r", "-R", "--recursive", "--dereference-recursive"},
    "tree": {"-o"},
    "fd": {"-x", "-X", "--exec", "--exec-batch", "-H", "--hidden"},
}
_GLOB_OK = frozenset({"ls", "find", "wc", "stat", "du", "file", "tree", "fd", "echo"})


def is_read_only(command: str, root: Path | None = None) -> bool:
    """Whether `command` only reads the workspace and touches no secret file.

    Strict on purpose: no redirection to files, no command substitution, only known
    readers; any argument naming a secret file (or a glob that might) disqualifies it.
    """
    if re.search(r"\$\(|`|<\(|>\(", command):
        return False
    try:
        parsed = parse_command(command)
    except ValueError:
        return False
    if not parsed:
        return False
    is_secret = _secret_test(root)
    return all(_simple_read_only(simple, is_secret) for simple in parsed)


def _simple_read_only(simple: SimpleCommand, is_secret: Callable[[str], bool]) -> bool:
    if simple.writes_to and any(t not in _HARMLESS_DEVICES for t in simple.writes_to):
        return False
    if not simple.words or simple.words[0] != simple.name and "/" in simple.words[0]:
        return False  # ./script or /abs/tool: unknown program
    name, args = simple.name, simple.args
    if name == "git":
        sub = next((a for a in args if not a.startswith("-")), "")
        if sub not in _READ_ONLY_GIT or any(a.startswith(("--output", "-c", "-C")) for a in args):
            return False
    elif name not in _READ_ONLY and name != "find":
        return False
    forbidden = _FORBIDDEN_FLAGS.get(name, set())
    if any(a in forbidden or a.split("=", 1)[0] in forbidden for a in args):
        return False
    if name not in _GLOB_OK and any(_GLOB_CHARS.search(a) for a in args):
        return False
    return not any(_names_secret(a, is_secret) for a in [*args, *simple.reads_from])


def _names_secret(argument: str, is_secret: Callable[[str], bool]) -> bool:
    """Whether an argument (or a `rev:path` / `--opt=path` part of it) names a secret file."""
    parts = {argument, *re.split(r"[:=]", argument)}
    return any(part and is_secret(part) for part in parts)


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

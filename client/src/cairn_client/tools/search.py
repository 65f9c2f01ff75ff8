"""The grep tool: content search with the real ripgrep binary, capped for the model.

Owns finding `rg`, the flags it runs with (.gitignore respected, secret files
excluded) and turning its output into `path:line:text` lines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cairn_protocol.tools import GrepArgs

from cairn_client.secrets import (
    SECRET_NAME_PATTERNS,
    TOKEN_CONFIG_NAMES,
    secret_checker,
    withheld_note,
)
from cairn_client.tools.base import PathFilter
from cairn_client.tools.paths import ToolError, relative_display, resolve_in_workspace

DEFAULT_MAX_RESULTS = 200
GREP_TIMEOUT_S = 60.0
MAX_COLUMNS = 500
COUNT_CEILING = 100_000  # matches past the cap are counted up to this, then rg is stopped
# Secret files by name, as ripgrep globs; token configs (.npmrc…) are dropped by content.
SECRET_GLOBS: tuple[str, ...] = (
    *SECRET_NAME_PATTERNS,
    "**/.aws/config",
    "**/.docker/config.json",
    "**/.kube/config",
)
# Cheap pre-check of output paths in case a glob above ever missed: names starting so.
_SECRET_NAME_STARTS = (".env", "id_", ".netrc", ".git-cred", "credentials", ".pgpass")


def ripgrep_binary() -> Path:
    """The `rg` installed next to this Python (the ripgrep wheel), else the one on PATH."""
    beside = Path(sys.executable).parent / "rg"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("rg")
    if found is None:
        raise ToolError("ripgrep (rg) is not installed, so grep and glob cannot run")
    return Path(found)


def grep(root: Path, args: GrepArgs, withheld: PathFilter | None = None) -> str:
    """Lines matching `args.pattern`, as `path:N:text` (context lines as `path-N-text`).

    Secret files are never searched (not even ones the user allowed for read); files
    `withheld` says to leave out are left out, and counted.
    """
    is_secret = secret_checker(root)
    target = _search_target(root, args.path, is_secret)
    command = _rg_command(args, target)
    limit = args.max_results or DEFAULT_MAX_RESULTS
    drop = _OutputFilter(is_secret, withheld)
    with tempfile.TemporaryFile() as errors:
        capped = _run_capped(command, root, errors, limit, drop)
        errors.seek(0)
        error_text = errors.read().decode("utf-8", errors="replace").strip()
    where = f" in {target}" if target else ""
    lines, returncode = capped.lines, capped.returncode
    if returncode == 2 and not lines:
        raise ToolError(error_text or f"ripgrep failed searching for {args.pattern!r}")
    left_out = (
        [withheld_by_rules_note(len(drop.withheld_files), "with matches ")]
        if drop.withheld_files
        else []
    )
    if not lines:
        return "\n".join([f"no matches for {args.pattern!r}{where}", *left_out])
    if capped.truncated:
        lines.append(capped.note(limit))
    if returncode == 2 and error_text:
        lines.append(f"(some files could not be searched: {error_text.splitlines()[0]})")
    return "\n".join([*lines, *left_out])


class _OutputFilter:
    """Which output paths to drop: rg's globs already skip secret names, so only token
    configs (secret by content) need a look; then what the rules withhold, counted."""

    def __init__(self, is_secret: Callable[[str], bool], withheld: PathFilter | None) -> None:
        self.is_secret = is_secret
        self.withheld = withheld
        self.withheld_files: set[str] = set()

    def __call__(self, path: str) -> bool:
        name = path.rpartition("/")[2]
        if (name in TOKEN_CONFIG_NAMES or name.startswith(_SECRET_NAME_STARTS)) and self.is_secret(
            path
        ):
            return True
        if self.withheld is not None and self.withheld(path):
            self.withheld_files.add(path)
            return True
        return False


def withheld_by_rules_note(count: int, which: str = "") -> str:
    """What a grep or glob says about files its deny or ask rules on path left out."""
    files = "file" if count == 1 else "files"
    return (
        f"({count} {files} {which}withheld by the permission rules in your settings; "
        "they are not shown)"
    )


def _search_target(root: Path, path: str | None, is_secret: Callable[[str], bool]) -> str | None:
    """The folder or file to search, relative to the root; None for the whole root."""
    if path is None:
        return None
    resolved = resolve_in_workspace(root, path)
    if not resolved.exists():
        raise ToolError(f"path not found: {path}")
    shown = relative_display(root, resolved)
    if resolved.is_file() and is_secret(shown):
        raise ToolError(f"grep does not search secret files. {withheld_note(shown)}")
    return None if shown == "." else shown


def _rg_command(args: GrepArgs, target: str | None) -> list[str]:
    command = [
        str(ripgrep_binary()),
        "--line-number",
        "--no-heading",
        "--color",
        "never",
        "--with-filename",
        "--null",
        "--hidden",
        "--max-columns",
        str(MAX_COLUMNS),
        "--max-columns-preview",
        "--glob",
        "!.git",
    ]
    if args.ignore_case:
        command.append("-i")
    if args.context:
        command += ["-C", str(args.context)]
    if args.glob:
        command += ["--glob", args.glob]
    for pattern in SECRET_GLOBS:  # later globs win in ripgrep, so these come last
        command += ["--glob", f"!{pattern}"]
    command += ["--regexp", args.pattern]
    if target is not None:
        command += ["--", target]
    return command


@dataclass
class _Capped:
    """What rg printed, up to the cap, and a count of the matches left out after it."""

    lines: list[str] = field(default_factory=list)
    shown: int = 0
    left_out: int = 0  # matches past the cap, counted up to COUNT_CEILING
    left_out_files: set[str] = field(default_factory=set)
    returncode: int = 0

    @property
    def truncated(self) -> bool:
        return self.left_out > 0

    def note(self, limit: int) -> str:
        more = (
            f"more than {self.left_out:,}"
            if self.left_out >= COUNT_CEILING
            else f"{self.left_out:,}"
        )
        files = len(self.left_out_files)
        return (
            f"(showing the first {limit} matching lines; {more} more in {files} "
            f"file{'s' if files != 1 else ''} not shown: narrow the pattern, path or glob)"
        )


def _run_capped(
    command: list[str], root: Path, errors: IO[bytes], limit: int, is_secret: Callable[[str], bool]
) -> _Capped:
    """Run rg, keeping up to `limit` matching lines and counting (not keeping) the rest."""
    process = subprocess.Popen(
        command,
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=errors,
    )
    timer = threading.Timer(GREP_TIMEOUT_S, process.kill)
    timer.start()
    capped = _Capped()
    assert process.stdout is not None
    try:
        for raw in process.stdout:
            line, is_match = _format_line(
                raw.decode("utf-8", errors="replace").rstrip("\n"), is_secret
            )
            if line is None:
                continue
            if capped.shown < limit or not is_match and not capped.truncated:
                capped.lines.append(line)
                capped.shown += is_match
                continue
            if is_match:
                capped.left_out += 1
                capped.left_out_files.add(line.split(":", 1)[0])
                if capped.left_out >= COUNT_CEILING:
                    break
    finally:
        if capped.left_out >= COUNT_CEILING:
            process.kill()
        process.stdout.close()
        capped.returncode = process.wait()
        timer.cancel()
    if capped.returncode < 0 and capped.left_out < COUNT_CEILING:
        raise ToolError(f"grep took longer than {GREP_TIMEOUT_S:.0f} s; narrow the path or glob")
    while capped.lines and capped.lines[-1] == "--":
        capped.lines.pop()
    return capped


def _format_line(line: str, is_secret: Callable[[str], bool]) -> tuple[str | None, bool]:
    """One rg output line (`path\\0N:text` with --null) as text, and whether it is a match.

    Lines from secret files are dropped (None) even if a glob let them through.
    """
    if line == "--":
        return line, False
    path, separator, rest = line.partition("\0")
    if not separator:
        return line, True  # e.g. "binary file matches" notices
    if is_secret(path):
        return None, False
    number = rest[: len(rest) - len(rest.lstrip("0123456789"))]
    kind = rest[len(number) : len(number) + 1]
    return f"{path}{kind}{rest}", kind == ":"

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
from pathlib import Path
from typing import IO

from cairn_protocol.tools import GrepArgs

from cairn_client.policy.policy import SECRET_FILE_PATTERNS, is_secret_path
from cairn_client.tools.paths import ToolError, relative_display, resolve_in_workspace

DEFAULT_MAX_RESULTS = 200
GREP_TIMEOUT_S = 60.0
MAX_COLUMNS = 500


def ripgrep_binary() -> Path:
    """The `rg` installed next to this Python (the ripgrep wheel), else the one on PATH."""
    beside = Path(sys.executable).parent / "rg"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("rg")
    if found is None:
        raise ToolError("ripgrep (rg) is not installed, so grep and glob cannot run")
    return Path(found)


def grep(root: Path, args: GrepArgs) -> str:
    """Lines matching `args.pattern`, as `path:N:text` (context lines as `path-N-text`)."""
    target = _search_target(root, args.path)
    command = _rg_command(args, target)
    limit = args.max_results or DEFAULT_MAX_RESULTS
    with tempfile.TemporaryFile() as errors:
        lines, truncated, returncode = _run_capped(command, root, errors, limit)
        errors.seek(0)
        error_text = errors.read().decode("utf-8", errors="replace").strip()
    where = f" in {target}" if target else ""
    if returncode == 2 and not lines:
        raise ToolError(error_text or f"ripgrep failed searching for {args.pattern!r}")
    if not lines:
        return f"no matches for {args.pattern!r}{where}"
    if truncated:
        lines.append(
            f"(showing the first {limit} matching lines; there are more: narrow the pattern, "
            "path or glob)"
        )
    if returncode == 2 and error_text:
        lines.append(f"(some files could not be searched: {error_text.splitlines()[0]})")
    return "\n".join(lines)


def _search_target(root: Path, path: str | None) -> str | None:
    """The folder or file to search, relative to the root; None for the whole root."""
    if path is None:
        return None
    resolved = resolve_in_workspace(root, path)
    if not resolved.exists():
        raise ToolError(f"path not found: {path}")
    shown = relative_display(root, resolved)
    if resolved.is_file() and is_secret_path(shown):
        raise ToolError(f"{shown} may hold secrets; grep does not search it")
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
    for pattern in SECRET_FILE_PATTERNS:  # later globs win in ripgrep, so these come last
        command += ["--glob", f"!{pattern}"]
    command += ["--regexp", args.pattern]
    if target is not None:
        command += ["--", target]
    return command


def _run_capped(
    command: list[str], root: Path, errors: IO[bytes], limit: int
) -> tuple[list[str], bool, int]:
    """Run rg, keeping output up to `limit` matching lines; stop it once there are more."""
    process = subprocess.Popen(
        command,
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=errors,
    )
    timer = threading.Timer(GREP_TIMEOUT_S, process.kill)
    timer.start()
    lines: list[str] = []
    matches = 0
    truncated = False
    assert process.stdout is not None
    try:
        for raw in process.stdout:
            line, is_match = _format_line(raw.decode("utf-8", errors="replace").rstrip("\n"))
            if line is None:
                continue
            if is_match:
                if matches == limit:
                    truncated = True
                    break
                matches += 1
            lines.append(line)
    finally:
        if truncated:
            process.kill()
        process.stdout.close()
        returncode = process.wait()
        timer.cancel()
    if returncode < 0 and not truncated:
        raise ToolError(f"grep took longer than {GREP_TIMEOUT_S:.0f} s; narrow the path or glob")
    while lines and lines[-1] == "--":
        lines.pop()
    return lines, truncated, returncode


def _format_line(line: str) -> tuple[str | None, bool]:
    """One rg output line (`path\\0N:text` with --null) as text, and whether it is a match.

    Lines from secret files are dropped (None) even if a glob let them through.
    """
    if line == "--":
        return line, False
    path, separator, rest = line.partition("\0")
    if not separator:
        return line, True  # e.g. "binary file matches" notices
    if is_secret_path(path):
        return None, False
    number = rest[: len(rest) - len(rest.lstrip("0123456789"))]
    kind = rest[len(number) : len(number) + 1]
    return f"{path}{kind}{rest}", kind == ":"

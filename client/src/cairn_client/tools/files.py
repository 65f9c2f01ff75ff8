"""The read and glob tools: numbered file contents and file listings for the model.

Owns how a file is shown (numbering, long lines, paging notes, binary refusal) and
how file names are listed (ripgrep's walker: .gitignore respected, newest first).
"""

from __future__ import annotations

import difflib
import subprocess
from collections.abc import Collection
from pathlib import Path

from cairn_protocol.tools import GlobArgs, ReadArgs

from cairn_client.secrets import secret_checker, withheld_note
from cairn_client.tools.base import PathFilter
from cairn_client.tools.paths import ToolError, relative_display, resolve_in_workspace
from cairn_client.tools.search import ripgrep_binary, withheld_by_rules_note

DEFAULT_READ_LIMIT = 2000
MAX_LINE_CHARS = 2000
MAX_READ_CHARS = 100_000  # of numbered text per read; the rest is paged with offset
MAX_GLOB_RESULTS = 1000
GLOB_TIMEOUT_S = 60.0
_BINARY_SNIFF_BYTES = 8192


def read_file(root: Path, args: ReadArgs, allowed_secrets: Collection[str] = ()) -> str:
    """The file's lines as `N\\tline`, from `offset` (1-based) for at most `limit` lines.

    Secret files are refused unless their workspace-relative path is in `allowed_secrets`.
    """
    path = resolve_in_workspace(root, args.path)
    shown = relative_display(root, path)
    _check_readable_file(root, path, args.path)
    if secret_checker(root, allowed_secrets)(shown):
        raise ToolError(withheld_note(shown))
    if _looks_binary(path):
        raise ToolError(
            f"{shown} is a binary file; read only shows text files (use shell, e.g. "
            f"`file {shown}` or `xxd {shown} | head`, to inspect it)"
        )
    offset = args.offset or 1
    limit = args.limit or DEFAULT_READ_LIMIT
    numbered: list[str] = []
    total = 0
    size = 0
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            total = number
            if offset <= number < offset + limit and size < MAX_READ_CHARS:
                text = _clip_line(line.rstrip("\n"))
                numbered.append(f"{number}\t{text}")
                size += len(numbered[-1]) + 1
    if total == 0:
        return f"({shown} is empty)"
    if offset > total:
        return f"({shown} has {total} lines; offset {offset} is past the end)"
    last_shown = offset + len(numbered) - 1
    if last_shown < total:
        numbered.append(
            f"({total - last_shown} more lines not shown; continue with offset={last_shown + 1})"
        )
    return "\n".join(numbered)


def glob_files(
    root: Path,
    args: GlobArgs,
    allowed_secrets: Collection[str] = (),
    withheld: PathFilter | None = None,
) -> str:
    """Files under `path` matching `pattern`, newest first, .gitignore respected.

    Secret files are listed (the model may know they exist) but marked as withheld; files
    `withheld` says to leave out (the user's deny and ask rules) are not listed, only counted.
    """
    folder = resolve_in_workspace(root, args.path or ".")
    if not folder.is_dir():
        problem = "is a file, not a folder" if folder.exists() else "was not found"
        raise ToolError(f"folder {args.path} {problem}")
    finished = rg_files(folder, args.pattern, newest_first=True, timeout_s=GLOB_TIMEOUT_S)
    listed = [
        relative_display(root, folder / name)
        for name in finished.stdout.decode("utf-8", errors="replace").splitlines()
        if name
    ]
    if finished.returncode not in (0, 1) and not listed:
        raise ToolError(finished.stderr.decode("utf-8", errors="replace").strip())
    where = "" if args.path in (None, "", ".") else f" in {relative_display(root, folder)}"
    found = len(listed)
    if withheld is not None:
        listed = [name for name in listed if not withheld(name)]
    left_out = [withheld_by_rules_note(found - len(listed))] if len(listed) < found else []
    if not listed:
        return "\n".join([f'no files match "{args.pattern}"{where}', *left_out])
    is_secret = secret_checker(root, allowed_secrets)
    shown = [
        f"{name} (secret: content withheld)" if is_secret(name) else name
        for name in listed[:MAX_GLOB_RESULTS]
    ]
    if len(listed) > MAX_GLOB_RESULTS:
        cut = len(listed) - MAX_GLOB_RESULTS
        shown.append(f"({cut} more files not shown; use a narrower pattern or path)")
    return "\n".join([*shown, *left_out])


def rg_files(
    folder: Path, pattern: str | None = None, *, newest_first: bool, timeout_s: float
) -> subprocess.CompletedProcess[bytes]:
    """ripgrep's file listing of `folder` (names relative to it): .gitignore respected, hidden
    files included, `.git` left out; ToolError when it takes longer than `timeout_s`."""
    command = [str(ripgrep_binary()), "--files", "--hidden", "--glob", "!.git"]
    if pattern is not None:
        command += ["--glob", pattern]
    if newest_first:
        command += ["--sortr", "modified"]
    try:
        return subprocess.run(
            command,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        took = f"listing files took longer than {timeout_s:.0f} s; narrow the path"
        raise ToolError(took) from None


def _check_readable_file(root: Path, path: Path, asked: str) -> None:
    if path.is_dir():
        raise ToolError(f"{asked} is a folder, not a file; use glob to list its files")
    if path.exists():
        return
    message = f"file not found: {asked}"
    suggestions = _close_matches(root, path)
    if suggestions:
        message += f". Did you mean: {', '.join(suggestions)}?"
    raise ToolError(message)


def _close_matches(root: Path, missing: Path) -> list[str]:
    """Similar names in the missing file's folder (cheap: one directory listing)."""
    folder = missing.parent
    if not folder.is_dir():
        return []
    try:
        names = [entry.name for entry in folder.iterdir()]
    except OSError:
        return []
    close = difflib.get_close_matches(missing.name, names, n=3, cutoff=0.6)
    return [relative_display(root, folder / name) for name in close]


def _looks_binary(path: Path) -> bool:
    with path.open("rb") as handle:
        return b"\0" in handle.read(_BINARY_SNIFF_BYTES)


def _clip_line(line: str) -> str:
    if len(line) <= MAX_LINE_CHARS:
        return line
    return (
        f"{line[:MAX_LINE_CHARS]}… [line cut: {len(line) - MAX_LINE_CHARS} more characters; "
        "grep for what you need in it]"
    )

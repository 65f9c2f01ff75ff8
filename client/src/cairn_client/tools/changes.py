"""File changes proposed by edit, write and apply_patch, their diff, and applying them.

Owns computing FileChange tuples without touching disk, rendering the unified diff
the user approves, and the all-or-nothing write that refuses stale changes.
"""

from __future__ import annotations

import difflib
import os
import stat
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cairn_client.patching import PatchError, apply_patch, parse_patch, patch_paths
from cairn_client.tools.base import FileChange
from cairn_client.tools.paths import ToolError, relative_display, resolve_in_workspace

DEV_NULL = "/dev/null"
_BINARY_SNIFF_BYTES = 8192


class StaleChange(ToolError):
    """A file no longer holds what the preview showed, so the change was not applied."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path} {detail} since the change was previewed; nothing was applied")
        self.path = path


# --------------------------------------------------------------------------- preparing


def read_text(root: Path, path: str) -> tuple[str, str | None]:
    """The workspace-relative name of `path` and its text (None if it does not exist).

    Only UTF-8 text can be edited: anything else is refused rather than mangled.
    """
    resolved = resolve_in_workspace(root, path)
    shown = relative_display(root, resolved)
    if resolved.is_dir():
        raise ToolError(f"{shown} is a folder, not a file")
    if not resolved.exists():
        return shown, None
    data = resolved.read_bytes()
    if b"\0" in data[:_BINARY_SNIFF_BYTES]:
        raise ToolError(f"{shown} is a binary file; it cannot be edited as text")
    try:
        return shown, data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{shown} is not UTF-8 text; it cannot be edited safely") from None


def edit_change(
    root: Path, path: str, old_string: str, new_string: str, replace_all: bool = False
) -> FileChange:
    """Replace `old_string` (exactly once, or everywhere with `replace_all`) in one file."""
    shown, content = read_text(root, path)
    if content is None:
        raise ToolError(f"file not found: {path}; use write to create a new file")
    if old_string == new_string:
        raise ToolError("old_string and new_string are identical; there is nothing to change")
    if not old_string:
        raise ToolError("old_string is empty; give the exact text to replace")
    if old_string not in content and "\r\n" in content:
        # The model writes "\n"; a CRLF file holds "\r\n". Same text, same place.
        old_string, new_string = _crlf(old_string), _crlf(new_string)
    positions = _occurrences(content, old_string)
    if not positions:
        raise ToolError(
            f"old_string was not found in {shown}; read the file and copy the text exactly "
            "(including indentation)"
        )
    if len(positions) > 1 and not replace_all:
        lines = ", ".join(str(content.count("\n", 0, at) + 1) for at in positions)
        raise ToolError(
            f"old_string occurs {len(positions)} times in {shown} (lines {lines}); add "
            "surrounding lines to make it unique, or set replace_all"
        )
    after = content.replace(old_string, new_string, -1 if replace_all else 1)
    return FileChange(path=shown, before=content, after=after)


def write_change(root: Path, path: str, content: str) -> FileChange:
    """Create `path` or replace its whole content."""
    shown, before = read_text(root, path)
    if before == content:
        raise ToolError(f"{shown} already has exactly this content; there is nothing to change")
    return FileChange(path=shown, before=before, after=content)


def patch_changes(root: Path, patch: str) -> tuple[FileChange, ...]:
    """The changes a unified diff makes, one FileChange per file, checked against disk.

    Hunks are placed by content (see cairn_client.patching); a patch with any hunk that
    cannot be placed uniquely is refused whole, with a reason per hunk.
    """
    try:
        names = patch_paths(patch)
    except PatchError as exc:
        raise ToolError(str(exc)) from None
    shown: dict[str, str] = {}
    files: dict[str, str] = {}
    for name in names:
        shown[name], content = read_text(root, name)
        if content is not None:
            files[name] = content
    try:
        results = apply_patch(patch, files)
    except PatchError as exc:
        raise ToolError(str(exc)) from None
    renamed_from = {s.target: s.source for s in parse_patch(patch) if s.renames}
    changes = tuple(
        FileChange(
            path=shown[name],
            before=files.get(name),
            after=after,
            mode_from=shown[renamed_from[name]] if name in renamed_from else None,
        )
        for name, after in results.items()
        if files.get(name) != after
    )
    if not changes:
        raise ToolError("the patch changes nothing")
    return changes


# --------------------------------------------------------------------------- diff


def render_diff(changes: Iterable[FileChange]) -> str:
    """The unified diff of `changes`, with `a/` `b/` headers, as the user approves it."""
    parts: list[str] = []
    for change in changes:
        from_file = f"a/{change.path}" if change.before is not None else DEV_NULL
        to_file = f"b/{change.path}" if change.after is not None else DEV_NULL
        diff = "".join(
            difflib.unified_diff(
                _diff_lines(change.before), _diff_lines(change.after), from_file, to_file
            )
        )
        parts.append(diff or f"--- {from_file}\n+++ {to_file}\n")
    return "".join(parts)


def _diff_lines(text: str | None) -> list[str]:
    lines = _split_lines(text or "")
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


# --------------------------------------------------------------------------- applying


@dataclass
class _Undo:
    """How to put one file back as it was before apply_changes touched it."""

    path: Path
    original: bytes | None
    mode: int | None
    created_dirs: list[Path] = field(default_factory=list)

    def restore(self) -> None:
        if self.original is None:
            self.path.unlink(missing_ok=True)
        else:
            _write_atomic(self.path, self.original, self.mode)
        for folder in reversed(self.created_dirs):
            try:
                folder.rmdir()
            except OSError:
                pass


def apply_changes(root: Path, changes: Sequence[FileChange]) -> list[str]:
    """Write every change or none; returns the changed paths.

    Each file must still hold exactly the previewed `before` (or still not exist):
    otherwise StaleChange, and nothing is written. A failure half-way restores the
    files already written.
    """
    targets = [(change, resolve_in_workspace(root, change.path)) for change in changes]
    if len({path for _, path in targets}) != len(targets):
        raise ToolError("the same file appears twice in one change")
    for change, path in targets:
        _verify_unchanged(change, path)
    # Read before anything is written: a rename's source is deleted by the same change.
    inherited = {
        change.path: _mode(resolve_in_workspace(root, change.mode_from))
        for change in changes
        if change.mode_from is not None
    }
    done: list[_Undo] = []
    try:
        for change, path in targets:
            done.append(_apply_one(change, path, inherited.get(change.path)))
    except BaseException:
        for undo in reversed(done):
            undo.restore()
        raise
    return [change.path for change in changes]


def _verify_unchanged(change: FileChange, path: Path) -> None:
    if not path.exists():
        if change.before is not None:
            raise StaleChange(change.path, "was deleted")
        return
    if change.before is None:
        raise StaleChange(change.path, "was created")
    try:
        current = path.read_bytes().decode("utf-8")
    except (UnicodeDecodeError, IsADirectoryError):
        raise StaleChange(change.path, "changed") from None
    if current != change.before:
        raise StaleChange(change.path, "changed")


def _mode(path: Path) -> int | None:
    return stat.S_IMODE(path.stat().st_mode) if path.exists() else None


def _apply_one(change: FileChange, path: Path, inherited_mode: int | None) -> _Undo:
    existed = path.exists()
    undo = _Undo(
        path=path,
        original=path.read_bytes() if existed else None,
        mode=_mode(path),
    )
    if change.after is None:
        path.unlink()
        return undo
    undo.created_dirs = _make_parents(path.parent)
    try:
        _write_atomic(
            path, change.after.encode("utf-8"), inherited_mode if undo.mode is None else undo.mode
        )
    except BaseException:
        undo.restore()
        raise
    return undo


def _make_parents(folder: Path) -> list[Path]:
    """Create missing folders, returning the ones created (outermost first)."""
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    missing.reverse()
    for created in missing:
        created.mkdir()
    return missing


def _write_atomic(path: Path, data: bytes, mode: int | None) -> None:
    """Write via a temporary file in the same folder and os.replace; keeps `mode`."""
    temporary = path.with_name(f".{path.name}.cairn-{uuid.uuid4().hex[:8]}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- text helpers


def _split_lines(text: str) -> list[str]:
    """Lines with their endings, split on "\\n" only (unlike str.splitlines)."""
    pieces = text.split("\n")
    lines = [piece + "\n" for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return lines


def _occurrences(text: str, needle: str) -> list[int]:
    positions: list[int] = []
    at = text.find(needle)
    while at != -1:
        positions.append(at)
        at = text.find(needle, at + len(needle))
    return positions


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")

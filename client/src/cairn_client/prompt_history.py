"""What the person typed at the TUI's prompt, per workspace, so the up arrow finds it again.

Owns a small JSON-lines file in the client's private data folder (the prompts may hold what
the person would not show others), one per workspace, keeping the newest MAX_ENTRIES.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from cairn_client.private_files import private_file

MAX_ENTRIES = 500
HISTORY_FOLDER = "history"


@dataclass
class PromptHistory:
    """The entries, oldest first, and where browsing with up/down stands (None: not browsing)."""

    path: Path | None = None  # None: kept in memory only
    entries: list[str] = field(default_factory=list)
    _cursor: int | None = None
    _draft: str = ""

    @classmethod
    def in_data_dir(cls, data_dir: Path, workspace_root: Path) -> PromptHistory:
        """The history of `workspace_root`, read from the data folder (empty when unreadable)."""
        name = hashlib.sha256(str(workspace_root).encode()).hexdigest()[:16]
        path = data_dir / HISTORY_FOLDER / f"{name}.jsonl"
        return cls(path, _read(path))

    def add(self, text: str) -> None:
        """Remember a sent prompt (not twice in a row) and stop browsing."""
        self._cursor = None
        if not text.strip() or (self.entries and self.entries[-1] == text):
            return
        self.entries.append(text)
        trimmed = len(self.entries) > MAX_ENTRIES
        del self.entries[:-MAX_ENTRIES]
        if self.path is not None:
            self._write(rewrite=trimmed, newest=text)

    def previous(self, current: str) -> str | None:
        """The entry before the one shown (the newest at first); None at the oldest."""
        if not self.entries:
            return None
        if self._cursor is None:
            self._draft, self._cursor = current, len(self.entries)
        if self._cursor == 0:
            return None
        self._cursor -= 1
        return self.entries[self._cursor]

    def next(self) -> str | None:
        """The entry after the one shown, then what was being typed; None when not browsing."""
        if self._cursor is None:
            return None
        self._cursor += 1
        if self._cursor >= len(self.entries):
            self._cursor = None
            return self._draft
        return self.entries[self._cursor]

    def _write(self, *, rewrite: bool, newest: str) -> None:
        assert self.path is not None
        try:
            private_file(self.path)
            if rewrite:
                self.path.write_text("".join(json.dumps(e) + "\n" for e in self.entries))
            else:
                with self.path.open("a", encoding="utf-8") as file:
                    file.write(json.dumps(newest) + "\n")
        except OSError:
            pass  # a history that cannot be kept is not worth an error at the prompt


def _read(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    entries: list[str] = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash is skipped, not the whole history
        if isinstance(entry, str):
            entries.append(entry)
    return entries[-MAX_ENTRIES:]

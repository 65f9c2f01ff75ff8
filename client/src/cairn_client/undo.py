"""/undo: putting back the last change applied through edit, write or apply_patch.

Owns the stack of applied changes in a session and reverting the newest one, refused when
any of its files changed since cairn wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cairn_client.errors import CairnError
from cairn_client.tools.base import FileChange
from cairn_client.tools.changes import StaleChange, apply_changes
from cairn_client.tools.paths import ToolError

MAX_UNDO = 100


class UndoRefused(CairnError):
    """Nothing was reverted; the message says why."""


@dataclass(frozen=True)
class AppliedChange:
    call_id: str
    tool: str
    changes: tuple[FileChange, ...]

    def describe(self) -> str:
        verbs = []
        for change in self.changes:
            if change.before is None:
                verbs.append(f"removed {change.path} (it was created)")
            elif change.after is None:
                verbs.append(f"restored {change.path} (it was deleted)")
            else:
                verbs.append(f"restored {change.path}")
        return "; ".join(verbs)

    def note_for_model(self) -> str:
        """What the model is told, so it does not build on the reverted edit."""
        return (
            f"The user ran /undo and reverted your {self.tool} call {self.call_id}: "
            f"{self.describe()}. Those files are back to their content before that call; "
            "read them again before editing them, and do not redo the change unless asked."
        )


class UndoStack:
    """The changes applied in this session, newest last."""

    def __init__(self, root: Path, limit: int = MAX_UNDO) -> None:
        self.root = root
        self.limit = limit
        self._applied: list[AppliedChange] = []

    def __len__(self) -> int:
        return len(self._applied)

    def record(self, call_id: str, tool: str, changes: tuple[FileChange, ...]) -> None:
        if changes:
            self._applied.append(AppliedChange(call_id, tool, changes))
            del self._applied[: -self.limit]

    def undo_last(self) -> AppliedChange:
        """Revert the newest change, all files or none; UndoRefused if that is not safe.

        A refused change stays on the stack: it is still the newest one.
        """
        if not self._applied:
            raise UndoRefused("there is no change from this session to undo")
        last = self._applied[-1]
        reverse = _reversed(last.changes)
        try:
            apply_changes(self.root, reverse)
        except StaleChange as exc:
            raise UndoRefused(
                f"{exc.path} changed since cairn wrote it, so nothing was reverted; "
                "undo it by hand or with git"
            ) from None
        except (ToolError, OSError) as exc:
            raise UndoRefused(f"could not revert: {exc}; nothing was reverted") from None
        self._applied.pop()
        return last


def _reversed(changes: tuple[FileChange, ...]) -> list[FileChange]:
    """The changes that put `changes` back; a renamed file's source gets its mode back."""
    renamed_to = {c.mode_from: c.path for c in changes if c.mode_from is not None}
    return [
        FileChange(c.path, before=c.after, after=c.before, mode_from=renamed_to.get(c.path))
        for c in changes
    ]

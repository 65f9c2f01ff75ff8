"""Slash commands the TUI and headless mode both understand in what the user typed.

Owns how `/compact [focus]` and `/mode [name]` are recognised; `/init` goes to the server as
a marked message, `/undo` and the rest are plain `/word` commands of the TUI.
"""

from __future__ import annotations

import re

_COMPACT = re.compile(r"^/compact(?:\s+(?P<focus>.*))?$", re.DOTALL)
_MODE = re.compile(r"^/mode(?:\s+(?P<name>\S+))?$")


def compact_focus(text: str) -> str | None:
    """For `/compact [focus]`, the focus ("" when none was given); None for anything else."""
    match = _COMPACT.match(text.strip())
    return None if match is None else (match.group("focus") or "").strip()


def mode_argument(text: str) -> str | None:
    """For `/mode [name]`, the name ("" to show the current mode); None for anything else."""
    match = _MODE.match(text.strip())
    return None if match is None else (match.group("name") or "")

"""Slash commands the TUI and headless mode both understand in what the user typed.

Owns how `/compact [focus]` is recognised; `/init` goes to the server as a marked message.
"""

from __future__ import annotations

import re

_COMPACT = re.compile(r"^/compact(?:\s+(?P<focus>.*))?$", re.DOTALL)


def compact_focus(text: str) -> str | None:
    """For `/compact [focus]`, the focus ("" when none was given); None for anything else."""
    match = _COMPACT.match(text.strip())
    return None if match is None else (match.group("focus") or "").strip()

"""Pure edits of a block's text: replace exactly once, insert at a line, limits and diffs.

Owns the rules a memory edit must satisfy and the wording of their errors for the model.
"""

from __future__ import annotations

import difflib
import re

from cairn_server.errors import CairnServerError

DIFF_MAX_LINES = 40

# What a model copies by mistake from a numbered view: "12→", "12: ", "12 | ", "Line 12: ".
_NUMBERED_LINE = re.compile(r"^\s*(?:line\s+)?\d+\s*(?:→|\||:|\t)", re.IGNORECASE)
# The markup the memory section wraps blocks in (see context/memory_view.py).
_BLOCK_MARKUP = re.compile(r"</?memory_block\b|<value>|</value>|\bchars=\"\d+/\d+\"")


class MemoryEditError(CairnServerError, ValueError):
    """An edit that cannot be made; the message tells the model how to fix its call."""


def replace_once(label: str, value: str, old: str, new: str) -> str:
    """`value` with the single occurrence of `old` replaced by `new`."""
    if old == "":
        raise MemoryEditError(
            "old_string is empty; to add text use memory_insert, to rewrite use memory_rethink"
        )
    _reject_decorations(old, value)
    count = value.count(old)
    if count == 0:
        hint = _near_miss_hint(value, old)
        raise MemoryEditError(f"old_string was not found in block {label!r}{hint}")
    if count > 1:
        lines = ", ".join(str(n) for n in _occurrence_lines(value, old))
        raise MemoryEditError(
            f"old_string occurs {count} times in block {label!r} (at lines {lines}); "
            "include more surrounding text so it occurs exactly once"
        )
    return value.replace(old, new, 1)


def insert_at(label: str, value: str, text: str, line: int | None) -> str:
    """`value` with `text` inserted after line `line` (0: at the top; None: at the end)."""
    if text == "":
        raise MemoryEditError("text is empty; there is nothing to insert")
    lines = value.splitlines()
    if line is None:
        line = len(lines)
    if not 0 <= line <= len(lines):
        raise MemoryEditError(
            f"line {line} is outside block {label!r}, which has {len(lines)} lines; "
            f"use 0 to insert at the top or {len(lines)} (or omit line) to append"
        )
    return "\n".join([*lines[:line], *text.splitlines(), *lines[line:]])


def check_limit(label: str, new_value: str, char_limit: int) -> None:
    if len(new_value) > char_limit:
        over = len(new_value) - char_limit
        raise MemoryEditError(
            f"block {label!r} would hold {len(new_value)} characters, {over} over its limit "
            f"of {char_limit}; nothing was changed. Make the text shorter, or condense the "
            "block first with memory_rethink"
        )


def short_diff(label: str, old: str, new: str, max_lines: int = DIFF_MAX_LINES) -> str:
    """A unified diff with one line of context, trimmed to `max_lines` lines."""
    lines = list(
        difflib.unified_diff(
            old.splitlines(), new.splitlines(), f"{label} (before)", f"{label} (after)", n=1
        )
    )[2:]  # the ---/+++ headers say nothing the caller does not already say
    body = [line.rstrip("\n") for line in lines]
    if not body:
        return "(no change)"
    if len(body) > max_lines:
        hidden = len(body) - max_lines
        body = [*body[:max_lines], f"… {hidden} more diff lines"]
    return "\n".join(body)


def full_diff(label: str, old: str, new: str, old_name: str, new_name: str) -> str:
    """A complete unified diff for people (CLI and REST), with file-style headers."""
    return "".join(
        difflib.unified_diff(
            _with_newlines(old),
            _with_newlines(new),
            f"{label} {old_name}",
            f"{label} {new_name}",
        )
    )


def _with_newlines(text: str) -> list[str]:
    return [line + "\n" for line in text.splitlines()]


def _reject_decorations(old: str, value: str) -> None:
    if _BLOCK_MARKUP.search(old) and not _BLOCK_MARKUP.search(value):
        raise MemoryEditError(
            'old_string includes the memory section\'s markup (tags or the chars="…" '
            "counter); send only text from inside the block"
        )
    lines = [line for line in old.splitlines() if line.strip()]
    numbered = [line for line in lines if _NUMBERED_LINE.match(line)]
    if numbered and len(numbered) == len(lines) and old not in value:
        raise MemoryEditError(
            f"old_string starts its lines with line numbers (like {numbered[0].strip()[:12]!r}); "
            "blocks have no line numbers: send the text exactly as it appears in the block"
        )


def _occurrence_lines(value: str, old: str) -> list[int]:
    lines: list[int] = []
    start = value.find(old)
    while start != -1:
        lines.append(value.count("\n", 0, start) + 1)
        start = value.find(old, start + 1)
    return lines


def _near_miss_hint(value: str, old: str) -> str:
    if " ".join(old.split()) and " ".join(old.split()) in " ".join(value.split()):
        return " (it does occur with different whitespace or line breaks; copy it exactly)"
    if old.lower() in value.lower():
        return " (it occurs with different upper/lower case; copy it exactly)"
    return "; copy the text exactly as the block shows it"

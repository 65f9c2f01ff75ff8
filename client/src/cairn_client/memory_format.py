"""How memory blocks, their history, diffs and the context budget read, in the CLI and the TUI.

Owns those short texts as pure functions returning strings or Rich Text; no I/O.
"""

from __future__ import annotations

import difflib
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Rich loads when a text is made, not with the CLI
    from cairn_protocol.rest import BlockPublic, BlockVersionPublic
    from rich.text import Text

BAR_WIDTH = 30


def block_heading(block: BlockPublic) -> str:
    """`project · v4 · 1,204/5,000 chars · read-only`, and after a save that had secrets cut
    `· 1 secret redacted before storing`."""
    parts = [block.label, f"v{block.version}", f"{block.chars:,}/{block.char_limit:,} chars"]
    if block.read_only:
        parts.append("read-only")
    if block.secrets_redacted:
        parts.append(redacted_note(block))
    return " · ".join(parts)


def redacted_note(block: BlockPublic) -> str:
    """`1 secret redacted before storing`: the server cut secrets from what was saved."""
    from cairn_protocol.redaction import secrets_phrase  # loads the protocol: only when needed

    return f"{secrets_phrase(block.secrets_redacted)} redacted before storing"


def author_line(version: BlockVersionPublic) -> str:
    """`user`, or `agent via memory_replace (conversation cnv_1, run run_2)`."""
    who: str = version.author_kind
    if version.author and version.author != version.author_kind:
        who = f"{who} {version.author}"
    if version.tool:
        who = f"{who} via {version.tool}"
    where = [
        f"{name} {value}"
        for name, value in (("conversation", version.conversation_id), ("run", version.run_id))
        if value
    ]
    return f"{who} ({', '.join(where)})" if where else who


HISTORY_COLUMNS = ("version", "when", "action", "author", "reason")


def history_row(version: BlockVersionPublic) -> tuple[str, str, str, str, str]:
    """One version as a row of a history table, in the order of HISTORY_COLUMNS."""
    return (
        f"v{version.version}",
        when(version.created_at),
        version.action,
        author_line(version),
        version.reason or "",
    )


def when(moment: datetime) -> str:
    """A timestamp in local time, to the second."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def version_diff(older: BlockVersionPublic | None, newer: BlockVersionPublic) -> str:
    """The unified diff a version made to the value (from nothing for the first one)."""
    before = older.value if older is not None else ""
    name = f"{newer.label} v{older.version}" if older is not None else "(nothing)"
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        newer.value.splitlines(keepends=True),
        name,
        f"{newer.label} v{newer.version}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def colour_diff(diff: str) -> Text:
    """A unified diff with added lines green, removed red and hunk headers cyan."""
    from rich.text import Text

    text = Text()
    for line in diff.splitlines(keepends=True):
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        else:
            style = ""
        text.append(line if line.endswith("\n") else line + "\n", style=style)
    return text


def budget_line(total: int, budget: int, width: int = BAR_WIDTH) -> Text:
    """`[██████░░░░…] 12,345 of 128,000 tokens (9.6%)`, yellow past 80 %, red over budget."""
    fraction = total / budget if budget > 0 else 1.0
    filled = min(width, round(fraction * width))
    style = "red" if fraction > 1 else "yellow" if fraction > 0.8 else "green"
    from rich.text import Text

    line = Text("[")
    line.append("█" * filled, style=style)
    line.append("░" * (width - filled), style="dim")
    line.append(f"] {total:,} of {budget:,} tokens ({fraction:.1%})")
    return line


def share(tokens: int, budget: int) -> str:
    """Tokens as a percentage of the budget."""
    return f"{tokens / budget:.1%}" if budget > 0 else ""

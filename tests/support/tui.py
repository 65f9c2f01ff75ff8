"""Reading the Textual app the way a user sees it, for Pilot tests.

Shared by the TUI tests and the end-to-end tests.
"""

from __future__ import annotations

from cairn_client.tui.app import CairnApp
from cairn_client.tui.widgets.chat import ToolEntry
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Markdown, Static


def rendered_text(widget: Widget) -> str:
    """The widget's text as drawn on screen, line by line, right-trimmed."""
    width, height = widget.size
    lines = widget.render_lines(Region(0, 0, width, height))
    return "\n".join(line.text.rstrip() for line in lines).strip("\n")


def chat_entries(app: CairnApp) -> list[str]:
    """One string per chat entry: Markdown source for answers, a tool call's line (without its
    result: `tool_results`), the visible text otherwise."""
    entries = []
    for child in app.chat.children:
        if isinstance(child, ToolEntry):
            entries.append(child.header_text)
        elif isinstance(child, Markdown):
            entries.append(child.source)
        elif isinstance(child, Static):
            entries.append(str(child.visual).strip())
    return entries


def status_text(app: CairnApp) -> str:
    return app.status.render().plain


def tool_entries(app: CairnApp) -> list[ToolEntry]:
    return list(app.chat.query_children(ToolEntry))


def tool_results(app: CairnApp) -> list[str]:
    """What each tool call shows under its line (empty when it has no result)."""
    return [entry.result_text for entry in tool_entries(app)]

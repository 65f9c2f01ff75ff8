"""The one-line status bar: workspace, model, connection, this session's usage and activity.

Owns how that line is rendered; the app sets its reactive fields.
"""

from __future__ import annotations

from cairn_protocol.messages import Usage
from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

from cairn_client.tui.formatting import usage_label


class StatusLine(Widget):
    """`repo · model · connected · in 1,200 · cached 800 · out 90 · $0.0042 · running…`"""

    model: reactive[str | None] = reactive[str | None](None)
    connection: reactive[str] = reactive("connecting…")
    connection_ok: reactive[bool] = reactive(True)
    usage: reactive[Usage] = reactive(Usage, always_update=True)
    activity: reactive[str] = reactive("")

    def __init__(self, workspace_name: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.workspace_name = workspace_name

    def render(self) -> Content:
        separator = Content.styled(" · ", "dim")
        parts = [
            Content.styled(self.workspace_name, "bold"),
            Content(self.model or "no model"),
            Content.styled(self.connection, "" if self.connection_ok else "$text-warning"),
            Content(usage_label(self.usage)),
        ]
        if self.activity:
            parts.append(Content.styled(self.activity, "$text-accent"))
        return separator.join(parts)

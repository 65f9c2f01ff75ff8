"""The one-line status bar: workspace, model, connection, context use, usage, reflection cost,
activity.

Owns how that line is rendered; the app sets its reactive fields.
"""

from __future__ import annotations

from cairn_protocol.messages import Usage
from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

from cairn_client.formatting import context_label, usage_label


class StatusLine(Widget):
    """`repo · model · connected · plan mode · running… · ctx 3.1k/12k · in 1,200 · cached 800 ·
    out 90 · $0.0042 · reflection $0.0007`; the permission mode unless it is `default`; ctx
    (tokens of the last request / budget) once a step, a compaction or the welcome of a
    conversation said it; the reflection's cost once the conversation has had one."""

    model: reactive[str | None] = reactive[str | None](None)
    connection: reactive[str] = reactive("connecting…")
    connection_ok: reactive[bool] = reactive(True)
    mode: reactive[str | None] = reactive[str | None](None)  # the permission mode
    usage: reactive[Usage] = reactive(Usage, always_update=True)
    # What the conversation's reflections cost (None: it has had none).
    reflection: reactive[Usage | None] = reactive[Usage | None](None)
    context: reactive[tuple[int, int] | None] = reactive[tuple[int, int] | None](None)
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
        ]
        if self.mode not in (None, "default"):  # shown when it differs from the usual
            parts.append(Content.styled(f"{self.mode} mode", "$text-warning"))
        if self.activity:  # before the figures, so a narrow terminal cuts those instead
            parts.append(Content.styled(self.activity, "$text-accent"))
        if self.context is not None:
            parts.append(Content(context_label(*self.context)))
        parts.append(Content(usage_label(self.usage)))
        if self.reflection is not None:
            parts.append(Content(f"reflection ${self.reflection.cost_usd:.4f}"))
        return separator.join(parts)

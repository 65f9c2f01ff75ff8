"""The context panel: what the model sees next in this conversation, by section, against the budget.

Owns loading the context report (in a worker), its table of sections and items, and showing the
highlighted section's text.
"""

from __future__ import annotations

from typing import ClassVar

from cairn_protocol.rest import ContextReport, ContextSection
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label, Static

from cairn_client.api import ApiError, CairnApi
from cairn_client.memory_format import budget_line, share

MAX_PREVIEW_CHARS = 20_000


class ContextScreen(ModalScreen[None]):
    """Sections with their tokens and share of the budget; their items indented below them."""

    CSS_PATH = "context.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back", id="context.close"),
        Binding("f5", "reload", "Reload", id="context.reload"),
    ]

    def __init__(self, api: CairnApi, conversation_id: str) -> None:
        super().__init__()
        self.api = api
        self.conversation_id = conversation_id
        self.report: ContextReport | None = None
        self._row_sections: list[ContextSection] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="context-dialog"):
            yield Label("Context window", id="context-title", markup=False)
            yield Static("Loading…", id="context-budget")
            yield DataTable(id="context-table", cursor_type="row")
            with VerticalScroll(id="context-text-box"):
                yield Static("", id="context-text", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#context-table", DataTable)
        table.add_column("section", key="section")
        table.add_column("tokens", key="tokens")
        table.add_column("share", key="share")
        table.focus()
        self.load()

    @work(group="context-load", exclusive=True, exit_on_error=False)
    async def load(self) -> None:
        try:
            report = await self.api.context(self.conversation_id)
        except ApiError as exc:
            self.query_one("#context-budget", Static).update(f"Could not load: {exc.detail}")
            self.notify(exc.detail, title="Could not load the context", severity="error")
            return
        self.show(report)

    def show(self, report: ContextReport) -> None:
        self.report = report
        model = report.model or "no model"
        title = f"Context window · {model} · tokenizer: {report.tokenizer}"
        self.query_one("#context-title", Label).update(title)
        self.query_one("#context-budget", Static).update(
            budget_line(report.total_tokens, report.budget)
        )
        table = self.query_one("#context-table", DataTable)
        table.clear()
        self._row_sections = []
        for section in report.sections:
            table.add_row(
                Text(section.name, style="bold"),
                Text(f"{section.tokens:,}", justify="right"),
                Text(share(section.tokens, report.budget), justify="right"),
            )
            self._row_sections.append(section)
            for item in section.items:
                table.add_row(
                    Text(f"  {item.name}", style="dim"),
                    Text(f"{item.tokens:,}", style="dim", justify="right"),
                    Text(share(item.tokens, report.budget), style="dim", justify="right"),
                )
                self._row_sections.append(section)
        self._show_text(table.cursor_row)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_text(event.cursor_row)

    def _show_text(self, row: int) -> None:
        if not 0 <= row < len(self._row_sections):
            return
        section = self._row_sections[row]
        text = section.text or f"({section.name} is empty)"
        if len(text) > MAX_PREVIEW_CHARS:
            text = text[:MAX_PREVIEW_CHARS] + f"\n… ({len(text) - MAX_PREVIEW_CHARS:,} more chars)"
        self.query_one("#context-text", Static).update(text)

    def action_reload(self) -> None:
        self.load()

    def action_close(self) -> None:
        self.dismiss(None)

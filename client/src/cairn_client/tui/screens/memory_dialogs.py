"""Dialogs of the memory screen: confirm, create a block, and a block's history with revert.

Owns their keys and their answers; the server calls they make run in workers.
"""

from __future__ import annotations

from typing import ClassVar

from cairn_protocol.rest import BlockPublic, BlockVersionPublic
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DataTable, Footer, Input, Label, Static

from cairn_client.api import ApiError, CairnApi
from cairn_client.memory_format import HISTORY_COLUMNS, colour_diff, history_row, version_diff


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question: y or Enter on Yes answers yes; n or Esc answers no."""

    CSS_PATH = "memory.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, detail: str = "") -> None:
        super().__init__()
        self.question = question
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="memory-dialog"):
            yield Label(self.question, id="confirm-question", markup=False)
            if self.detail:
                yield Label(self.detail, id="confirm-detail", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Yes", id="confirm-yes", variant="error")
                yield Button("No", id="confirm-no")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm-yes")


class NewBlockScreen(ModalScreen[BlockPublic | None]):
    """Label, description, limit and read-only; answers the created block (None: cancelled).

    A refused creation (a taken or malformed label, a bad limit) is shown here, with what was
    typed kept.
    """

    CSS_PATH = "memory.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="new_block.cancel"),
    ]

    def __init__(self, api: CairnApi, agent_id: str) -> None:
        super().__init__()
        self.api = api
        self.agent_id = agent_id

    def compose(self) -> ComposeResult:
        with Vertical(id="new-block-dialog", classes="memory-dialog"):
            yield Label("New memory block", classes="dialog-title")
            yield Input(placeholder="label, e.g. testing", id="new-label")
            yield Input(placeholder="description: what the block is for", id="new-description")
            yield Input(
                placeholder="character limit (default 5000)", id="new-limit", type="integer"
            )
            yield Checkbox("read-only (the agent cannot edit it)", id="new-read-only")
            yield Label("", id="new-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Create", id="new-create", variant="primary")
                yield Button("Cancel", id="new-cancel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#new-label", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "new-create":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        label = self.query_one("#new-label", Input).value.strip()
        limit = self.query_one("#new-limit", Input).value.strip()
        if not label:
            self._show_error("Give the block a label.")
            return
        self._create(
            label,
            self.query_one("#new-description", Input).value.strip(),
            int(limit) if limit.lstrip("-").isdigit() else None,
            self.query_one("#new-read-only", Checkbox).value,
        )

    @work(group="memory-create", exclusive=True, exit_on_error=False)
    async def _create(
        self, label: str, description: str, char_limit: int | None, read_only: bool
    ) -> None:
        try:
            block = await self.api.create_block(
                self.agent_id,
                label,
                description=description,
                char_limit=char_limit,
                read_only=read_only,
            )
        except ApiError as exc:
            self._show_error(f"Not created: {exc.detail}")
            return
        self.dismiss(block)

    def _show_error(self, text: str) -> None:
        self.query_one("#new-error", Label).update(text)


class BlockHistoryScreen(ModalScreen[BlockPublic | None]):
    """Every version of one block, newest first, and what the highlighted one changed.

    `r` reverts to the highlighted version; the screen then answers the block as reverted.
    """

    CSS_PATH = "memory.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back", id="history.close"),
        Binding("r", "revert", "Revert to this version", id="history.revert"),
    ]

    def __init__(self, api: CairnApi, agent_id: str, label: str) -> None:
        super().__init__()
        self.api = api
        self.agent_id = agent_id
        self.label = label
        self.versions: list[BlockVersionPublic] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="history-dialog", classes="memory-dialog"):
            yield Label(f"History of {self.label}", classes="dialog-title", markup=False)
            yield DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="history-diff-box"):
                yield Static("Loading…", id="history-diff")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#history-table", DataTable)
        table.add_columns(*HISTORY_COLUMNS)
        table.focus()
        self._load()

    @work(group="memory-history", exclusive=True, exit_on_error=False)
    async def _load(self) -> None:
        try:
            self.versions = await self.api.block_history(self.agent_id, self.label)
        except ApiError as exc:
            self.query_one("#history-diff", Static).update(f"Could not load: {exc.detail}")
            self.notify(exc.detail, title="Could not load the history", severity="error")
            return
        table = self.query_one("#history-table", DataTable)
        for version in self.versions:
            table.add_row(*history_row(version), key=str(version.version))
        if self.versions:
            self._show_change(0)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_change(event.cursor_row)

    def _show_change(self, index: int) -> None:
        if not 0 <= index < len(self.versions):
            return
        version = self.versions[index]
        older = self.versions[index + 1] if index + 1 < len(self.versions) else None
        body = self.query_one("#history-diff", Static)
        if version.action == "delete":
            body.update(Text("Deleted. r on an earlier version brings it back.", style="bold"))
            return
        diff = version_diff(older, version)
        body.update(colour_diff(diff) if diff else Text("The value did not change.", style="dim"))

    def _highlighted(self) -> BlockVersionPublic | None:
        row = self.query_one("#history-table", DataTable).cursor_row
        return self.versions[row] if 0 <= row < len(self.versions) else None

    def action_revert(self) -> None:
        version = self._highlighted()
        if version is None:
            return
        if version.action == "delete":
            self.notify("That version is the deletion; pick an earlier one.")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._revert(version.version)

        question = f"Revert {self.label} to the value of v{version.version}?"
        detail = "It becomes a new version; the history keeps everything."
        self.app.push_screen(ConfirmScreen(question, detail), callback=confirmed)

    @work(group="memory-history", exit_on_error=False)
    async def _revert(self, version: int) -> None:
        try:
            block = await self.api.revert_block(self.agent_id, self.label, version)
        except ApiError as exc:
            self.notify(exc.detail, title="Could not revert", severity="error")
            return
        self.dismiss(block)

    def action_close(self) -> None:
        self.dismiss(None)

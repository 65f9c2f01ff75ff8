"""The screen shown when the agent has no usable model: how to configure one, or run the demo.

Owns the choice between "demo" (the CLI then runs `cairn demo`) and "quit".
"""

from __future__ import annotations

from typing import ClassVar, Literal

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Label, Markdown

SetupChoice = Literal["demo", "quit"]

NO_PROBLEM_GIVEN = "The server has no model configured for this agent."


class SetupScreen(Screen[SetupChoice]):
    """Explains the server's `model_problem` and offers the demo."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "choose('demo')", "Run the demo", id="setup.demo"),
        Binding("q", "choose('quit')", "Quit", id="setup.quit"),
    ]

    def __init__(self, model_problem: str | None) -> None:
        super().__init__()
        self.model_problem = model_problem or NO_PROBLEM_GIVEN

    def compose(self) -> ComposeResult:
        with Vertical(id="setup-dialog"):
            yield Label("No usable model", id="setup-title")
            with VerticalScroll(id="setup-problem"):
                yield Markdown(self.model_problem)
            with Horizontal(id="setup-buttons"):
                yield Button("Run the demo", id="setup-demo", variant="primary")
                yield Button("Quit", id="setup-quit")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#setup-demo", Button).focus()

    def action_choose(self, choice: SetupChoice) -> None:
        self.dismiss(choice)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss("demo" if event.button.id == "setup-demo" else "quit")

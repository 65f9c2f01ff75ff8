"""The prompt: one line the person types in, with up and down through what they sent before.

Owns browsing the workspace's prompt history from the input box; the app records what is sent.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import Input

from cairn_client.prompt_history import PromptHistory


class PromptInput(Input):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history_previous", "Previous prompt", show=False, id="prompt.previous"),
        Binding("down", "history_next", "Next prompt", show=False, id="prompt.next"),
    ]

    def __init__(self, value: str, *, history: PromptHistory, placeholder: str, id: str) -> None:
        super().__init__(value, placeholder=placeholder, id=id)
        self.history = history

    def action_history_previous(self) -> None:
        self._show(self.history.previous(self.value))

    def action_history_next(self) -> None:
        self._show(self.history.next())

    def _show(self, text: str | None) -> None:
        if text is not None:
            self.value = text
            self.cursor_position = len(text)

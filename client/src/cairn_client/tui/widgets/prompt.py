"""The prompt: one line the person types in, with up and down through what they sent before,
and completion of `/commands` and `@paths` in a list above it.

Owns browsing the workspace's prompt history from the input box and showing, moving through
and accepting completions (which ones: cairn_client.completion); the app records what is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option

from cairn_client.completion import Candidate, Completion, complete
from cairn_client.mentions import PathListing
from cairn_client.prompt_history import PromptHistory

Files = Callable[[], PathListing]


class CompletionMenu(OptionList):
    """The candidates for the word at the prompt's cursor, just above it (below the chat, in
    the flow: the prompt is docked); hidden when there are none."""

    DEFAULT_CSS = """
    CompletionMenu {
        display: none;
        width: 1fr;
        height: auto;
        max-height: 10;
        margin: 0 1;
        border: none;
        padding: 0;
    }
    """

    can_focus = False

    def show(self, completion: Completion) -> None:
        self.clear_options()
        self.add_options(
            Option(f"{candidate.label}  {candidate.help}".rstrip())
            for candidate in completion.candidates
        )
        self.highlighted = 0
        self.display = True

    def hide(self) -> None:
        self.display = False
        self.clear_options()


class PromptInput(Input):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history_previous", "Previous prompt", show=False, id="prompt.previous"),
        Binding("down", "history_next", "Next prompt", show=False, id="prompt.next"),
        Binding("tab", "accept_completion", "Complete", show=False, id="prompt.complete"),
        Binding("escape", "close_completion", "Close", show=False, id="prompt.close"),
    ]

    def __init__(
        self,
        value: str,
        *,
        history: PromptHistory,
        placeholder: str,
        id: str,
        menu: CompletionMenu | None = None,
        files: Files | None = None,
    ) -> None:
        """`menu` shows the completions (none without one); `files` lists the workspace's
        paths for `@` (no `@` completion without it)."""
        super().__init__(value, placeholder=placeholder, id=id)
        self.history = history
        self.menu = menu
        self.files = files
        self.completion: Completion | None = None

    # ------------------------------------------------------------------ history

    def action_history_previous(self) -> None:
        if self.completion is not None:
            self._move(-1)
        else:
            self._show(self.history.previous(self.value))

    def action_history_next(self) -> None:
        if self.completion is not None:
            self._move(1)
        else:
            self._show(self.history.next())

    def _show(self, text: str | None) -> None:
        if text is not None:
            self.value = text
            self.cursor_position = len(text)

    # ------------------------------------------------------------------ completion

    def on_input_changed(self, _event: Input.Changed) -> None:
        self.refresh_completion()

    def refresh_completion(self) -> None:
        """Offer what completes the word at the cursor (after a keystroke, or when the file
        list has come in)."""
        completion = complete(self.value, self.cursor_position, self.files)
        if completion is None or completion.settled() or self.menu is None:
            self._close()
            return
        self.completion = completion
        self.menu.show(completion)

    def action_accept_completion(self) -> None:
        """Tab: put the highlighted candidate in place of the word."""
        chosen = self._chosen()
        if chosen is not None:
            self._accept(chosen)

    async def action_close_completion(self) -> None:
        """Escape closes the list; without one it does what escape does in the app."""
        if self.completion is not None:
            self._close()
        else:
            await self.app.run_action("interrupt")

    async def action_submit(self) -> None:
        """Enter accepts the highlighted candidate when the list is open (a command that takes
        no argument then runs at once); otherwise, or when what was typed already is one of
        the candidates, it sends."""
        chosen = self._chosen()
        if chosen is None or (self.completion is not None and self.completion.exact()):
            self._close()
            await super().action_submit()
            return
        self._accept(chosen)
        if chosen.submits:
            await super().action_submit()

    def _chosen(self) -> Candidate | None:
        if self.completion is None or self.menu is None:
            return None
        at = self.menu.highlighted
        candidates = self.completion.candidates
        return candidates[at] if at is not None and 0 <= at < len(candidates) else None

    def _accept(self, candidate: Candidate) -> None:
        assert self.completion is not None
        text, cursor = self.completion.apply(self.value, candidate)
        self._close()
        self.value = text
        self.cursor_position = cursor

    def _move(self, step: int) -> None:
        if self.menu is None or self.completion is None:
            return
        count = len(self.completion.candidates)
        self.menu.highlighted = ((self.menu.highlighted or 0) + step) % count

    def _close(self) -> None:
        self.completion = None
        if self.menu is not None:
            self.menu.hide()

"""The conversation picker (/resume): the agent's conversations with their title, last
activity and message count, most recent first.

Owns loading that list (in a worker) and the choice: Enter dismisses with the conversation's
id, Esc with None.
"""

from __future__ import annotations

from typing import ClassVar

from cairn_protocol.rest import ConversationPublic
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, OptionList
from textual.widgets.option_list import Option

from cairn_client.api import ApiError, CairnApi
from cairn_client.memory_format import when

UNTITLED = "(no request yet)"


def conversation_line(conversation: ConversationPublic, open_id: str | None) -> Text:
    """One entry of the picker: its title, then last activity · messages (· open now)."""
    count = conversation.message_count
    details = [when(conversation.updated_at), f"{count} message{'' if count == 1 else 's'}"]
    if conversation.id == open_id:
        details.append("open now")
    if conversation.parent_id:
        details.append(f"helper of {conversation.parent_id}")
    marker = "↳ " if conversation.parent_id else ""
    title = marker + (conversation.title or UNTITLED)
    entry = Text(title, style="bold", overflow="ellipsis", no_wrap=True)
    entry.append("\n  " + " · ".join(details), style="dim")
    return entry


class ConversationsScreen(ModalScreen[str | None]):
    """Lists the conversations; Enter opens the highlighted one, Esc goes back."""

    DEFAULT_CSS = """
    ConversationsScreen { align: center middle; }
    #conversations-dialog {
        width: 90%; max-width: 110; height: 80%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    #conversations-list { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Back", id="conversations.cancel"),
    ]

    def __init__(self, api: CairnApi, agent_id: str, open_id: str | None) -> None:
        super().__init__()
        self.api = api
        self.agent_id = agent_id
        self.open_id = open_id
        self.conversations: list[ConversationPublic] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="conversations-dialog"):
            yield Label("Resume a conversation · Enter opens · Esc goes back", markup=False)
            yield OptionList(id="conversations-list")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        self.load()

    @work(group="conversations-load", exclusive=True, exit_on_error=False)
    async def load(self) -> None:
        listing = self.query_one(OptionList)
        try:
            conversations = await self.api.list_conversations(self.agent_id)
        except ApiError as exc:
            listing.add_option(Option(f"Could not load the conversations: {exc.detail}"))
            return
        self.conversations = conversations
        if not conversations:
            listing.add_option(Option("No conversations yet."))
            return
        listing.add_options(
            Option(conversation_line(conversation, self.open_id), id=conversation.id)
            for conversation in conversations
        )
        listing.highlighted = 0

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)

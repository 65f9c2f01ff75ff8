"""The scrolling conversation: user messages, streamed assistant Markdown, tool and notice lines.

Owns how each chat entry looks, the one assistant answer that may be streaming at a time, and
dropping a step's streamed text when the server says it is void (a retried model call).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from cairn_protocol.messages import HistoryItem, ToolStatus
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from cairn_client.formatting import STATUS_SYMBOLS, tool_line

NoticeKind = Literal["info", "warning", "error", "dim"]


class UserEntry(Static):
    """Something the user typed (markup off: brackets in a message are just text)."""

    def __init__(self, text: str) -> None:
        super().__init__(text, markup=False, classes="user-message")


class AssistantEntry(Markdown):
    """One assistant answer, rendered as Markdown."""

    def __init__(self, text: str = "") -> None:
        super().__init__(text, classes="assistant-message")


class ToolEntry(Static):
    """`✓ read src/app.py`: one tool call, coloured by how it ended."""

    def __init__(self, status: ToolStatus | None, line: str) -> None:
        symbol = STATUS_SYMBOLS[status] if status else "·"
        content = Content.assemble((symbol, "bold"), " ", line)
        super().__init__(content, classes=f"tool-line -{status or 'unknown'}")


class NoticeEntry(Static):
    """A line about the run or the connection (interrupted, reconnecting, errors)."""

    def __init__(self, text: str, kind: NoticeKind) -> None:
        super().__init__(text, markup=False, classes=f"notice -{kind}")


@dataclass
class _OpenStream:
    run_id: str
    entry: AssistantEntry
    stream: MarkdownStream


class ChatView(VerticalScroll, can_focus=False):
    """The conversation, kept scrolled to the bottom until the user scrolls up."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._open_stream: _OpenStream | None = None
        # The streamed entries of the step in progress (more than one when a notice split
        # the stream), until the step's complete message replaces them.
        self._step_run_id: str | None = None
        self._step_entries: list[AssistantEntry] = []

    def on_mount(self) -> None:
        self.anchor()

    async def add_user(self, text: str) -> None:
        await self._close_stream()
        await self.mount(UserEntry(text))

    async def append_delta(self, run_id: str, text: str) -> None:
        """Stream a piece of the current assistant answer (a new answer starts a new block)."""
        if self._open_stream is not None and self._open_stream.run_id != run_id:
            await self._close_stream()
        if self._open_stream is None:
            entry = AssistantEntry()
            await self.mount(entry)
            self._open_stream = _OpenStream(run_id, entry, Markdown.get_stream(entry))
            if self._step_run_id != run_id:
                self._step_run_id, self._step_entries = run_id, []
            self._step_entries.append(entry)
        await self._open_stream.stream.write(text)

    async def finish_assistant(self, run_id: str, text: str) -> None:
        """The complete answer replaces what the deltas built, so a lost delta can't garble it
        (and pieces of it split off by a notice don't show twice)."""
        pieces = self._take_step(run_id)
        current = self._open_stream
        if current is not None and current.run_id == run_id:
            self._open_stream = None
            await current.stream.stop()
            await self.remove_children([piece for piece in pieces if piece is not current.entry])
            if text:
                await current.entry.update(text)
            else:
                await current.entry.remove()
            return
        await self._close_stream()
        await self.remove_children(pieces)
        if text:
            await self.mount(AssistantEntry(text))

    async def end_run(self, run_id: str) -> None:
        """The run ended: keep a partial streamed answer as it is and stop streaming."""
        self._take_step(run_id)
        if self._open_stream is not None and self._open_stream.run_id == run_id:
            await self._close_stream()

    async def discard_step_output(self, run_id: str) -> None:
        """Remove what the run's current step streamed: the server voided it and streams the
        answer again, which must not show twice."""
        if self._open_stream is not None and self._open_stream.run_id == run_id:
            await self._close_stream()
        await self.remove_children(self._take_step(run_id))

    async def add_tool(self, status: ToolStatus | None, line: str) -> None:
        await self._close_stream()
        await self.mount(ToolEntry(status, line))

    async def add_notice(self, text: str, kind: NoticeKind = "info") -> None:
        await self._close_stream()
        await self.mount(NoticeEntry(text, kind))

    async def show_history(self, items: Iterable[HistoryItem]) -> None:
        """Earlier conversation: user messages, assistant Markdown and compact tool lines."""
        entries = [entry for item in items for entry in _history_entries(item)]
        if entries:
            await self.mount_all(entries)

    async def clear_view(self) -> None:
        """Empty the view only; the conversation on the server is untouched."""
        await self._close_stream()
        self._step_run_id, self._step_entries = None, []
        await self.remove_children()

    def _take_step(self, run_id: str) -> list[AssistantEntry]:
        """The run's streamed entries of the step in progress, which the step then no longer
        holds."""
        if self._step_run_id != run_id:
            return []
        entries = self._step_entries
        self._step_run_id, self._step_entries = None, []
        return entries

    async def _close_stream(self) -> None:
        if self._open_stream is not None:
            stream, self._open_stream = self._open_stream.stream, None
            await stream.stop()


def _history_entries(item: HistoryItem) -> list[Widget]:
    if item.role == "user":
        return [UserEntry(item.text)]
    if item.role == "tool":
        return []  # the raw result; the assistant's tool call line already says how it ended
    entries: list[Widget] = [AssistantEntry(item.text)] if item.text.strip() else []
    for call in item.tool_calls:
        line = tool_line(call.tool, call.arguments, call.status, call.reason)
        entries.append(ToolEntry(call.status, line))
    return entries

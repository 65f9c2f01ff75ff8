"""The scrolling conversation: user messages, streamed assistant Markdown, tool calls, notices.

Owns how each chat entry looks (a tool call: running with its elapsed time, then its result
collapsed under it), the one assistant answer that may be streaming at a time, and dropping a
step's streamed text when the server says it is void (a retried model call).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal

from cairn_protocol.messages import HistoryItem, HistoryToolCall, ToolStatus
from cairn_protocol.results import ResultPreview, not_run
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from cairn_client.formatting import STATUS_SYMBOLS, describe_call, elapsed_label, tool_line

NoticeKind = Literal["info", "warning", "error", "dim"]


class UserEntry(Static):
    """Something the user typed (markup off: brackets in a message are just text)."""

    def __init__(self, text: str) -> None:
        super().__init__(text, markup=False, classes="user-message")


class AssistantEntry(Markdown):
    """One assistant answer, rendered as Markdown."""

    def __init__(self, text: str = "") -> None:
        super().__init__(text, classes="assistant-message")


ToolState = Literal["queued", "waiting", "running", "done"]
Clock = Callable[[], float]
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
RESULT_MARK = "⎿"


class ToolEntry(Widget, can_focus=True):
    """One tool call: `⠋ shell "pytest -q"  12s` while it runs (ticking once a second), then
    `✓ shell "pytest -q"` coloured by how it ended, with its result collapsed under it (`⎿ exit
    code 0 · 42 lines of output`); Enter or a click shows the whole (capped) result and hides
    it again."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "enter", "toggle_result", "Show or hide the result", show=False, id="chat.toggle_result"
        ),
    ]

    def __init__(
        self,
        line: str,
        status: ToolStatus | None = None,
        *,
        state: ToolState = "done",
        result: ResultPreview | None = None,
        clock: Clock = time.monotonic,
        call: HistoryToolCall | None = None,
        run_id: str | None = None,
    ) -> None:
        super().__init__(classes="tool-line")
        self.line = line
        self.status: ToolStatus | None = status
        self.state: ToolState = state
        self.result = result
        self.expanded = False
        self.call = call  # the model's call, while it waits for its request
        self.server_call: HistoryToolCall | None = None  # a call the server runs itself
        self.run_id = run_id
        self._clock = clock
        self._started = clock()
        self._timer: Timer | None = None
        self._drawn = False
        self._header = Static(classes="tool-header")
        self._body = Static(classes="tool-result")

    def compose(self) -> ComposeResult:
        yield self._header
        yield self._body

    def on_mount(self) -> None:
        self._drawn = True
        self._show()

    @property
    def header_text(self) -> str:
        """The call's line as drawn (symbol, call, elapsed time while running)."""
        return self._header_content().plain

    @property
    def result_text(self) -> str:
        """What is drawn under the call: the summary, or the whole result when expanded."""
        return self._result_content().plain

    def start(self, line: str) -> None:
        """Its request came: running from now."""
        if self.state == "queued":
            self.state, self._started = "running", self._clock()
        if self.state != "done":
            self.line, self.call = line, None
            self._show()

    def wait_for_answer(self, waiting: bool) -> None:
        """The person is asked (the clock starts again when they have answered)."""
        if self.state not in ("queued", "waiting", "running"):
            return
        self.state = "waiting" if waiting else "running"
        self.call = None
        if not waiting:
            self._started = self._clock()
        self._show()

    def finish(self, status: ToolStatus | None, line: str, result: ResultPreview | None) -> None:
        self.status, self.line, self.result, self.state = status, line, result, "done"
        self.call = self.server_call = None
        self._show()

    def action_toggle_result(self) -> None:
        if self.result is not None:
            self.expanded = not self.expanded
            self._show()

    def on_click(self) -> None:
        self.focus()
        self.action_toggle_result()

    def on_focus(self) -> None:
        self._show()

    def on_blur(self) -> None:
        self._show()

    def refresh_state(self) -> None:
        """Draw the entry again after its state was set from outside."""
        self._show()

    def _show(self) -> None:
        self.set_class(self.state != "done", "-running")
        for status in ("ok", "denied", "error"):
            self.set_class(self.state == "done" and self.status == status, f"-{status}")
        self.set_class(self.state == "done" and self.status is None, "-unknown")
        if not self._drawn:  # the header and result are drawn from on_mount on
            return
        self._header.update(self._header_content())
        self._body.update(self._result_content())
        self._body.display = self.result is not None and self.state == "done"
        self._keep_ticking(self.state == "running")

    def _keep_ticking(self, running: bool) -> None:
        if running and self._timer is None:
            self._timer = self.set_interval(1.0, self._tick)
        elif not running and self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _tick(self) -> None:
        self._header.update(self._header_content())

    def _header_content(self) -> Content:
        if self.state == "queued":
            return Content.assemble(("·", "bold"), " ", self.line)
        if self.state == "waiting":
            return Content.assemble(("?", "bold"), " ", self.line)  # the dialog asks above
        if self.state == "running":
            elapsed = max(0.0, self._clock() - self._started)
            spinner = SPINNER[int(elapsed) % len(SPINNER)]
            return Content.assemble(
                (spinner, "bold"), " ", self.line, f"  {elapsed_label(elapsed)}"
            )
        symbol = STATUS_SYMBOLS[self.status] if self.status else "·"
        return Content.assemble((symbol, "bold"), " ", self.line)

    def _result_content(self) -> Content:
        if self.result is None:
            return Content("")
        if not self.expanded:
            hint = "  enter to expand" if self.has_focus and self.result.lines > 1 else ""
            return Content.assemble(f"  {RESULT_MARK} ", self.result.summary, (hint, "dim"))
        lines = self.result.text.splitlines() or [self.result.summary]
        body = "\n".join([f"  {RESULT_MARK} {lines[0]}", *(f"    {line}" for line in lines[1:])])
        return Content(body)


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
        self._tools: dict[str, ToolEntry] = {}  # by call_id; queued ones by run and model id
        self.clock: Clock = time.monotonic  # what running calls' elapsed times are read from

    def _now(self) -> float:
        return self.clock()

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

    async def end_run(self, run_id: str, why: str = "") -> None:
        """The run ended: keep a partial streamed answer as it is and stop streaming; its
        calls never asked for were not run (`why`: the run's detail or stop reason)."""
        self._take_step(run_id)
        for entry in self._tools.values():
            if entry.state == "queued" and entry.run_id == run_id and entry.call is not None:
                call = entry.call
                line = tool_line(call.tool, call.arguments, "error", not_run(why))
                entry.finish("error", line, None)
            elif entry.server_call is not None and entry.run_id == run_id:  # its end unheard
                call = entry.server_call
                entry.finish(None, tool_line(call.tool, call.arguments, None, None), None)
        if self._open_stream is not None and self._open_stream.run_id == run_id:
            await self._close_stream()

    async def discard_step_output(self, run_id: str) -> None:
        """Remove what the run's current step streamed: the server voided it and streams the
        answer again, which must not show twice."""
        if self._open_stream is not None and self._open_stream.run_id == run_id:
            await self._close_stream()
        await self.remove_children(self._take_step(run_id))

    async def add_tool(
        self, status: ToolStatus | None, line: str, result: ResultPreview | None = None
    ) -> ToolEntry:
        """A call that has ended (or whose end this client will not hear of)."""
        await self._close_stream()
        entry = ToolEntry(line, status, result=result, clock=self._now)
        await self.mount(entry)
        return entry

    async def run_server_call(self, run_id: str, call: HistoryToolCall) -> None:
        """A call the server runs itself (memory, search): running until its tool_settled."""
        entry = await self.add_tool(None, describe_call(call.tool, call.arguments))
        entry.state, entry.run_id, entry.server_call = "running", run_id, call
        entry.refresh_state()
        self._tools[call.call_id] = entry

    async def queue_tool(self, run_id: str, call: HistoryToolCall) -> None:
        """A model's client tool call, shown before its request comes (or the tool_settled
        of the server's refusal to send it)."""
        entry = await self.add_tool(None, describe_call(call.tool, call.arguments))
        entry.state, entry.call, entry.run_id = "queued", call, run_id
        entry.refresh_state()
        self._tools[_queued_key(run_id, call.call_id)] = entry

    async def start_tool(
        self, call_id: str, line: str, *, run_id: str = "", model_call_id: str | None = None
    ) -> ToolEntry:
        """The call's request came: its entry (the queued one, or a new one) runs from now.
        Asking again for the same call_id changes nothing."""
        entry = self._tools.get(call_id)
        if entry is None and model_call_id in self._tools:  # a server call asked about
            entry = self._tools[model_call_id]
        if entry is None:
            entry = self._tools.pop(_queued_key(run_id, model_call_id or ""), None)
            if entry is None and model_call_id is not None:  # shown in the history
                entry = self._tools.pop(_queued_key("", model_call_id), None)
            if entry is None:
                entry = await self.add_tool(None, line)
                entry.state = "queued"
            self._tools[call_id] = entry
        entry.start(line)
        return entry

    def tool(self, call_id: str) -> ToolEntry | None:
        return self._tools.get(call_id)

    def settle_call(
        self,
        run_id: str,
        call_id: str,
        status: ToolStatus,
        reason: str | None,
        result: ResultPreview | None,
    ) -> None:
        """A model's call that no client ran ended (`call_id` is the model's): one the server
        ran itself, or one it refused before sending it (queued, or waiting in the history)."""
        entry = self._tools.get(call_id)
        call = entry.server_call if entry is not None else None
        if call is None:
            for key in (_queued_key(run_id, call_id), _queued_key("", call_id)):
                if key in self._tools and self._tools[key].state == "queued":
                    entry = self._tools.pop(key)
                    call = entry.call
                    break
        if entry is not None and call is not None:
            entry.finish(status, tool_line(call.tool, call.arguments, status, reason), result)

    async def finish_tool(
        self,
        call_id: str,
        status: ToolStatus | None,
        line: str,
        result: ResultPreview | None = None,
    ) -> None:
        """The call ended: its entry shows how, or a new entry does when it has none."""
        entry = self._tools.get(call_id)
        if entry is None:
            self._tools[call_id] = await self.add_tool(status, line, result)
        else:
            entry.finish(status, line, result)

    async def add_notice(self, text: str, kind: NoticeKind = "info") -> None:
        await self._close_stream()
        await self.mount(NoticeEntry(text, kind))

    async def show_history(self, items: Iterable[HistoryItem]) -> None:
        """Earlier conversation: user messages, assistant Markdown and tool calls as they
        ended; one still waiting for its result runs there when its request comes again."""
        entries = [entry for item in items for entry in _history_entries(item)]
        for entry in entries:
            if isinstance(entry, ToolEntry) and entry.call is not None:
                self._tools[_queued_key("", entry.call.call_id)] = entry
        if entries:
            await self.mount_all(entries)

    async def clear_view(self) -> None:
        """Empty the view only; the conversation on the server is untouched."""
        await self._close_stream()
        self._step_run_id, self._step_entries = None, []
        self._tools.clear()
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
        line = tool_line(call.tool, call.arguments, call.status, call.reason, call.approval)
        if call.status is None:  # no result yet: its request may come again
            entries.append(
                ToolEntry(describe_call(call.tool, call.arguments), state="queued", call=call)
            )
        else:
            entries.append(ToolEntry(line, call.status, result=call.result))
    return entries


def _queued_key(run_id: str, model_call_id: str) -> str:
    return f"queued:{run_id}:{model_call_id}"

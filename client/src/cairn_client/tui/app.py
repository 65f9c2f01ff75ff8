"""The `cairn` Textual app: chat, prompt and status line, driven by a client session.

Owns rendering the SessionListener side of the session seam (typed messages, approval screens
fed by the approval queue, requests other clients run shown read-only) and what the slash
commands of the command table do in the TUI; the memory screen and context panel talk REST.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import ClassVar, Protocol

from cairn_protocol import ServerFrame
from cairn_protocol.mcp import is_mcp_tool
from cairn_protocol.messages import (
    AssistantDelta,
    AssistantMessage,
    ContextCompacted,
    ErrorEvent,
    HistoryItem,
    ModelRetry,
    Pong,
    RunFinished,
    RunStarted,
    StepFinished,
    ToolRequest,
    ToolSettled,
    ToolWithdrawn,
    Usage,
    UserCommand,
    Welcome,
)
from cairn_protocol.results import failure_reason, result_preview
from cairn_protocol.tools import CLIENT_TOOLS
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input
from textual.worker import Worker, WorkerState

from cairn_client import commands
from cairn_client.api import CairnApi
from cairn_client.approvals import Answer, ApprovalQueue
from cairn_client.errors import CairnError, ExitCode, UsageError
from cairn_client.formatting import (
    compaction_line,
    connection_label,
    connection_lost,
    describe_call,
    elsewhere_line,
    notice_sentence,
    reflection_lines,
    reflection_usage,
    retry_label,
    run_ending,
    shorten,
    tool_line,
    usage_label,
    whose,
)
from cairn_client.listener import ConnectionState, SessionControl, SessionListener
from cairn_client.mentions import Mentions, PathListing, mentions, split_attachments
from cairn_client.models import ModelRefused, model_line, set_model, switched_line, unusable_model
from cairn_client.policy.types import MODES, Approval, Mode, Verdict, as_mode
from cairn_client.prompt_history import PromptHistory
from cairn_client.tools.base import PreparedCall, ToolOutcome
from cairn_client.tui.messages import (
    ConnectionChanged,
    InterruptRequested,
    SessionEvent,
    ToolAsked,
    ToolHandled,
)
from cairn_client.tui.palette import SlashCommandProvider
from cairn_client.tui.screens.approval import ApprovalScreen
from cairn_client.tui.screens.context import ContextScreen
from cairn_client.tui.screens.conversations import ConversationsScreen
from cairn_client.tui.screens.memory import Drafts, MemoryScreen
from cairn_client.tui.screens.setup import SetupChoice, SetupScreen
from cairn_client.tui.widgets.chat import ChatView, NoticeKind
from cairn_client.tui.widgets.prompt import CompletionMenu, PromptInput
from cairn_client.tui.widgets.status import StatusLine
from cairn_client.undo import UndoRefused

CLOSE_TIMEOUT_S = 5.0
RUNNING = "running… (esc to interrupt)"
INTERRUPTING = "interrupting…"
COMPACTING = "compacting…"
DEMO_RESULT = "demo"
# A second Ctrl-C within this many seconds quits; the first one interrupts.
CTRL_C_AGAIN_S = 2.0
# What Shift+Tab cycles through: the everyday modes (strict and bypass only by /mode).
CYCLED_MODES: tuple[Mode, ...] = ("default", "accept-edits", "plan")

# Errors that answer a request the user made (/compact), told as notices rather than failures.
REFUSAL_CODES = frozenset({"nothing_to_compact", "run_in_progress"})


class SessionRunner(SessionControl, Protocol):
    """A session the app can start: SessionControl plus the loop that connects and runs it."""

    async def run(self) -> None:
        """Connect and handle events until the session is closed."""


StartSession = Callable[[SessionListener], SessionRunner]


class AppCompanion(Protocol):
    """Drives the app beside the person (the ticket flow): it sees what the app sees."""

    def attach(self, app: CairnApp) -> None: ...

    def server_event(self, event: ServerFrame) -> None:
        """Called after the app has shown the event."""

    def tool_handled(
        self, prepared: PreparedCall, verdict: Verdict, outcome: ToolOutcome
    ) -> None: ...

    def approval_answered(self, approval: Approval) -> None: ...


class CairnApp(App[str]):
    """One conversation with the workspace's agent. Exits with "demo" when the user picks it."""

    CSS_PATH = "app.tcss"
    TITLE = "cairn"
    AUTO_FOCUS = "#prompt"
    COMMANDS = App.COMMANDS | {SlashCommandProvider}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "interrupt", "Interrupt", show=False, id="cairn.interrupt"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True, id="cairn.quit"),
        Binding(
            "ctrl+c",
            "ctrl_c",
            "Interrupt, then quit",
            show=False,
            priority=True,
            id="cairn.quit_ctrl_c",
        ),
        Binding(
            "shift+tab",
            "cycle_mode",
            "Next permission mode",
            show=False,
            priority=True,
            id="cairn.cycle_mode",
        ),
        Binding("pageup", "scroll_chat(-1)", "Scroll up", show=False, id="cairn.page_up"),
        Binding("pagedown", "scroll_chat(1)", "Scroll down", show=False, id="cairn.page_down"),
        Binding("f2", "memory", "Memory", show=False, id="cairn.memory"),
        Binding("f3", "context", "Context", show=False, id="cairn.context"),
    ]

    def __init__(
        self,
        start_session: StartSession,
        *,
        workspace_name: str,
        initial_input: str = "",
        api: CairnApi | None = None,
        companion: AppCompanion | None = None,
        pick_conversation: bool = False,
        history: PromptHistory | None = None,
        mentions: Mentions | None = None,
        first_message: str = "",
    ) -> None:
        """`pick_conversation`: open the conversation picker once connected (`cairn --resume`
        without an id); `history`: what was sent before in this workspace (up/down);
        `mentions`: the workspace's files for `@` completion and attachments (none without);
        `first_message`: sent as if typed once the server has answered (`cairn "REQUEST"`)."""
        super().__init__()
        self._first_message = first_message.strip()
        self.mentions = mentions
        self.history = history or PromptHistory()
        self._pick_at_start = pick_conversation
        self._start_session = start_session
        self.companion = companion
        self._initial_input = initial_input
        self.workspace_name = workspace_name
        # REST for the memory screen and the context panel; ids come with the welcome.
        self.api = api
        self.agent_id: str | None = None
        self.conversation_id: str | None = None
        self.client_id: str | None = None  # a request naming another executor is only shown
        self._elsewhere: dict[str, ToolRequest] = {}  # such requests, until they settle
        self._own_requests: dict[str, ToolRequest] = {}  # this client's, until handled
        self._memory_drafts: Drafts = {}
        self._session: SessionRunner | None = None
        self._history_shown = False
        self._setup_shown = False
        self._connection_lost = False
        self._session_failed = False
        self._ever_connected = False
        # Why the app ended badly, for `cairn` to print as its last line with its exit code:
        # a server never reached, a connection lost for good, no usable model.
        self.failure: CairnError | None = None
        self._model_problem: ModelRefused | None = None
        self._quitting = False
        self._running_run_id: str | None = None
        self._last_ctrl_c = -CTRL_C_AGAIN_S
        self._retrying = False  # the activity shows a model retry until the run goes on
        self._usage = Usage()  # this session's (/cost)
        # The conversation's totals (the status line): the welcome's, plus the runs that
        # finished after it (a run_finished with a larger seq; the context gauge likewise
        # takes only compactions after it).
        self._totals, self._welcome_seq = Usage(), 0
        # Texts sent from here whose run_started has not come back yet (so they aren't shown twice).
        self._unconfirmed_sends: list[str] = []
        self.approvals = ApprovalQueue(self._show_approval)
        self._approvals_given: dict[str, Approval] = {}
        # Held directly, so updates never depend on which screen is on top.
        self.chat = ChatView(id="chat")
        self.status = StatusLine(workspace_name, id="status")

    # ------------------------------------------------------------------ layout and start

    def compose(self) -> ComposeResult:
        yield self.chat
        menu = CompletionMenu(id="completions")
        yield PromptInput(
            self._initial_input,
            history=self.history,
            placeholder="Message cairn — Enter sends · /clear · /quit",
            id="prompt",
            menu=menu,
            files=self._workspace_files if self.mentions is not None else None,
        )
        yield menu
        yield self.status

    def add_note(self, note: str) -> None:
        """A line the person must read once, kept in the chat (the local server restarted)."""
        self.call_later(self.chat.add_notice, f"{note}.", "warning")

    async def on_mount(self) -> None:
        if self.companion is not None:
            self.companion.attach(self)
        if self.mentions is not None:
            self._list_files()
        try:
            self._session = self._start_session(self)
        except Exception as exc:  # noqa: BLE001 - a broken configuration is shown, not a crash
            await self.chat.add_notice(f"Could not start the session: {exc}", "error")
            self.status.connection, self.status.connection_ok = "no session", False
            return
        for note in self._session.startup_notes():
            self.add_note(note)
        self.run_worker(
            self._session.run(),
            name="session",
            group="session",
            exclusive=True,
            exit_on_error=False,
        )

    # ------------------------------------------------------------------ SessionListener

    def server_event(self, event: ServerFrame) -> None:
        self.post_message(SessionEvent(event))

    def connection_changed(self, state: ConnectionState, detail: str) -> None:
        self.post_message(ConnectionChanged(state, detail))

    def notice(self, text: str) -> None:
        self.add_note(text)

    def tool_handled(self, prepared: PreparedCall, verdict: Verdict, outcome: ToolOutcome) -> None:
        self.post_message(ToolHandled(prepared, verdict, outcome))

    async def ask_approval(self, prepared: PreparedCall, verdict: Verdict) -> Approval:
        """Queue the question and wait for its answer without blocking the event loop."""
        shown: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.post_message(ToolAsked(prepared.request, True, shown))  # in order with the events
        await shown
        approval = await self.approvals.ask(prepared, verdict)
        self.post_message(ToolAsked(prepared.request, False))
        if approval.kind != "deny" and not prepared.request.approve_only:
            self._approvals_given[prepared.request.call_id] = approval
        if self.companion is not None:
            self.companion.approval_answered(approval)
        return approval

    def _show_approval(
        self, prepared: PreparedCall, verdict: Verdict, answer: Answer
    ) -> ApprovalScreen:
        settings_file = self._session.settings_file if self._session else ""
        screen = ApprovalScreen(prepared, verdict.options, settings_file or "your settings.toml")
        self.push_screen(screen, callback=answer)
        return screen

    # ------------------------------------------------------------------ session messages

    async def on_session_event(self, message: SessionEvent) -> None:
        try:
            await self._show_event(message.event)
        except Exception as exc:  # noqa: BLE001 - one odd event must not take the TUI down
            self.log.error(f"could not show {message.event!r}: {exc!r}")
            await self.chat.add_notice(f"Could not show a server event: {exc}", "dim")
        if self.companion is not None:
            self.companion.server_event(message.event)

    async def _show_event(self, event: ServerFrame) -> None:
        match event:
            case Welcome():
                await self._on_welcome(event)
            case RunStarted():
                await self._on_run_started(event)
            case AssistantDelta():
                self._retry_over()
                await self.chat.append_delta(event.run_id, event.text)
            case AssistantMessage():
                self._retry_over()
                await self._on_assistant_message(event)
            case ModelRetry():
                await self._on_model_retry(event)
            case StepFinished():
                self._retry_over()
                self.status.context = (event.context_tokens, event.context_budget)
            case ContextCompacted():
                await self._on_context_compacted(event)
            case ToolRequest():
                await self._on_tool_request(event)
            case Pong():
                pass
            case ToolSettled() | ToolWithdrawn():
                self.approvals.withdraw(event.call_id)
                if isinstance(event, ToolSettled):
                    await self._on_tool_settled(event)
            case RunFinished():
                await self._on_run_finished(event)
            case ErrorEvent():
                await self._on_error(event)
            case _:
                await self.chat.add_notice(f"Unexpected event: {shorten(repr(event), 120)}", "dim")

    async def _on_welcome(self, event: Welcome) -> None:
        self.agent_id, self.conversation_id = event.agent_id, event.conversation_id
        self.client_id = event.client_id
        self.status.model = event.model
        self.status.mode = self._session.mode if self._session is not None else None
        self._totals, self._welcome_seq = event.usage, event.seq
        self.status.usage = self._totals
        context = event.context
        self.status.context = (context.tokens, context.budget) if context is not None else None
        self._set_running(event.running_run_id)
        self._refresh_reflection_cost()
        if not self._history_shown:
            # Only the first welcome's history is new to this view; a reconnect would repeat it.
            self._history_shown = True
            await self.chat.show_history([_as_typed(item) for item in event.history])
        unusable = unusable_model(event)
        if unusable is not None and not self._setup_shown:
            self._setup_shown = True  # no model, or one the server cannot use: said at once
            self._model_problem = unusable
            self.push_screen(SetupScreen(event.model_problem), callback=self._on_setup_choice)
        for request in event.pending_tool_requests:
            await self._on_tool_request(request)
        if self._pick_at_start:
            self._pick_at_start = False
            await self.pick_conversation()
        if self._first_message:
            first, self._first_message = self._first_message, ""
            self.history.add(first)
            await self.run_slash_command(first)

    async def _on_tool_request(self, request: ToolRequest) -> None:
        """The call runs from now: here (its end comes with tool_handled) or in another
        client, where it is only shown, never asked about."""
        if request.approve_only:  # the server's own call, asked about: its tool_settled ends it
            line = describe_call(request.tool, request.arguments)
        elif request.executor == self.client_id:
            self._own_requests[request.call_id] = request
            line = describe_call(request.tool, request.arguments)
        else:
            self._elsewhere[request.call_id] = request
            line = elsewhere_line(request.tool, request.arguments, None, None)
        line = whose(request.helper) + line
        await self.chat.start_tool(
            request.call_id, line, run_id=request.run_id, model_call_id=request.model_call_id
        )

    async def _on_tool_settled(self, event: ToolSettled) -> None:
        """A call another client ran has ended; one of this client's ended without a report
        here (e.g. its recorded result was sent again after a restart); one no client ran (a
        server tool, a call the server refused) ended."""
        request = self._elsewhere.pop(event.call_id, None)
        if request is not None:
            line = elsewhere_line(request.tool, request.arguments, event.status, event.reason)
            await self.chat.finish_tool(event.call_id, event.status, whose(request.helper) + line)
            return
        request = self._own_requests.pop(event.call_id, None)
        entry = self.chat.tool(event.call_id)
        if request is not None and entry is not None and entry.state != "done":
            line = tool_line(request.tool, request.arguments, event.status, event.reason)
            await self.chat.finish_tool(event.call_id, event.status, whose(request.helper) + line)
        elif request is None:
            self.chat.settle_call(
                event.run_id, event.call_id, event.status, event.reason, event.result
            )

    async def on_tool_asked(self, message: ToolAsked) -> None:
        request = message.request
        try:
            entry = await self.chat.start_tool(
                request.call_id,
                whose(request.helper) + describe_call(request.tool, request.arguments),
                run_id=request.run_id,
                model_call_id=request.model_call_id,
            )
            entry.wait_for_answer(message.waiting)
        finally:  # the question goes on whatever happened here
            if message.shown is not None and not message.shown.done():
                message.shown.set_result(None)

    async def _on_run_started(self, event: RunStarted) -> None:
        self._set_running(event.run_id)
        self._refresh_reflection_cost()  # an idle reflection may have run since the last
        if self._unconfirmed_sends and self._unconfirmed_sends[0] == event.user_text.strip():
            self._unconfirmed_sends.pop(0)
        else:
            typed, attached = split_attachments(event.user_text)
            await self.chat.add_user(typed)
            for path in attached:
                await self.chat.add_notice(f"Attached {path}", "dim")

    async def _on_assistant_message(self, event: AssistantMessage) -> None:
        await self.chat.finish_assistant(event.run_id, event.text)
        for call in event.tool_calls:  # in the model's order, as the history shows them
            if call.tool in CLIENT_TOOLS or is_mcp_tool(call.tool):
                await self.chat.queue_tool(event.run_id, call)
            else:  # the server runs it: its tool_settled ends it
                await self.chat.run_server_call(event.run_id, call)

    async def _on_model_retry(self, event: ModelRetry) -> None:
        if event.discarded_output:
            await self.chat.discard_step_output(event.run_id)
        if self.status.activity != INTERRUPTING:
            self._retrying = True
            self.status.activity = retry_label(event)

    def _retry_over(self) -> None:
        """The model answers again: the activity goes back from the retry to running."""
        if self._retrying:
            self._retrying = False
            if self.status.activity != INTERRUPTING:
                self._set_running(self._running_run_id)

    async def _on_context_compacted(self, event: ContextCompacted) -> None:
        if self.status.activity == COMPACTING:
            self._set_running(self._running_run_id)
        if event.seq > self._welcome_seq:  # else the welcome's gauge is as recent
            self.status.context = (event.tokens_after, event.context_budget)
        await self.chat.add_notice(
            compaction_line(event), "info" if event.method == "summary" else "warning"
        )

    async def _on_error(self, event: ErrorEvent) -> None:
        if event.code in REFUSAL_CODES:
            if self.status.activity == COMPACTING:
                self._set_running(self._running_run_id)
            await self.chat.add_notice(notice_sentence(event.message), "warning")
            return
        await self.chat.add_notice(f"Server error ({event.code}): {event.message}", "error")

    async def _on_run_finished(self, event: RunFinished) -> None:
        self._usage = self._usage + event.usage
        if event.seq > self._welcome_seq:  # else the welcome's totals have it
            self._totals = self._totals + event.usage
            self.status.usage = self._totals
        self.approvals.withdraw_run(event.run_id)
        await self.chat.end_run(event.run_id, event.detail or event.stop_reason)
        for screen in self.screen_stack:
            if isinstance(screen, MemoryScreen):
                screen.reload()  # the run may have changed memory; drafts are kept
        if self._running_run_id in (event.run_id, None):
            self._set_running(None)
        ending = run_ending(event)
        if ending is not None:
            kind: NoticeKind = "error" if event.stop_reason == "model_error" else "warning"
            await self.chat.add_notice(ending, kind)

    async def on_connection_changed(self, message: ConnectionChanged) -> None:
        state, detail = message.state, message.detail
        self.status.connection = connection_label(state, detail)
        self.status.connection_ok = state in ("connecting", "connected")
        if state == "reconnecting" and not self._connection_lost:
            self._connection_lost = True  # one chat line per loss, not one per retry
            if self._ever_connected:
                await self.chat.add_notice(connection_lost(detail), "warning")
            else:  # reached, but the session is not open yet (its database was away)
                await self.chat.add_notice(f"Opening the session: {detail} — retrying…", "dim")
        elif state == "failed":
            self._session_failed = True
            if self._ever_connected:  # lost for good: what is on screen stays readable
                await self.chat.add_notice(
                    f"{notice_sentence(detail)}. Quit and start cairn again to continue this "
                    "conversation.",
                    "error",
                )
            else:  # never connected: the app closes and `cairn` prints this line
                await self.chat.add_notice(f"Could not reach the server: {detail}", "error")
        elif state == "connected":
            self._ever_connected = True
        if state == "connected" and self._connection_lost:
            self._connection_lost = False
            await self.chat.add_notice("Reconnected to the server.", "info")

    async def on_tool_handled(self, message: ToolHandled) -> None:
        prepared, outcome = message.prepared, message.outcome
        call_id = prepared.request.call_id
        reason = outcome.reason
        if outcome.status == "denied":
            reason = reason or message.verdict.reason
        elif outcome.status == "error":
            reason = failure_reason(reason or prepared.error, outcome.content)
        approval = self._approvals_given.pop(call_id, None)
        self._own_requests.pop(call_id, None)
        arguments = prepared.request.arguments
        line = whose(prepared.request.helper) + tool_line(
            prepared.tool, arguments, outcome.status, reason, approval.kind if approval else None
        )
        # What the model was given (redacted by the tools), cut for the screen.
        result = result_preview(prepared.tool, outcome.content) if outcome.content else None
        await self.chat.finish_tool(call_id, outcome.status, line, result)
        if self.companion is not None:
            self.companion.tool_handled(prepared, message.verdict, outcome)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "session" or self._quitting:
            return
        if event.state == WorkerState.ERROR:
            self.status.connection_ok = False
            error = event.worker.error
            if isinstance(error, CairnError):
                self.failure = error  # printed by `cairn` when the app has closed
                if not self._ever_connected:  # nothing to show here: close now
                    self._close_and_exit(None)
                    return
            if self._session_failed:
                return  # connection_changed("failed") already told the user why
            self.status.connection = "session failed"
            self.call_later(
                self.chat.add_notice, f"The session stopped: {event.worker.error}", "error"
            )
        elif event.state == WorkerState.SUCCESS:
            self.status.connection, self.status.connection_ok = "disconnected", False
            self.call_later(self.chat.add_notice, "The session ended.", "warning")

    # ------------------------------------------------------------------ user input

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "prompt":
            return
        text = event.value.strip()
        event.input.clear()
        if text:
            self.history.add(text)
            await self.run_slash_command(text)

    async def run_slash_command(self, text: str) -> None:
        """Run `text` as a command of the command table, or send it as a message."""
        invocation = commands.parse(text)
        if invocation is not None:
            await commands.run_in_tui(invocation, self)
        elif self._session is None:
            await self.chat.add_notice("Not connected: your message was not sent.", "error")
        elif self.mentions is not None and mentions(text):
            await self._send_with_files(text, self.mentions)
        else:
            await self.send_message(text)

    async def _send_with_files(self, text: str, workspace: Mentions) -> None:
        """Send `text` with the files it `@mentions` attached (read as the read tool reads
        them); what could not be attached is said, one line each, and the rest is sent."""
        attached = await workspace.attach(text)
        self._unconfirmed_sends.append(attached.text.strip())
        await self.chat.add_user(text)
        for line in attached.notices():
            await self.chat.add_notice(line, "dim" if line.startswith("Attached") else "warning")
        self._send(attached.text)

    async def send_message(self, text: str, command: UserCommand | None = None) -> None:
        """Show `text` as the user's message at once and send it in the background."""
        await self._show_sent(text)
        self._send(text, command)

    async def send_message_now(self, text: str) -> bool:
        """Show `text` as the user's message and send it; False when it could not be sent
        (the user is told why)."""
        await self._show_sent(text)
        return await self._deliver(text, None)

    async def _show_sent(self, text: str) -> None:
        self._unconfirmed_sends.append(text.strip())
        await self.chat.add_user(text)

    # ------------------------------------------------------------------ @ files

    def _workspace_files(self) -> PathListing:
        """The files `@` offers: the listing at hand, listed again in the background when
        stale (the list is refreshed when the new listing comes in)."""
        assert self.mentions is not None
        if self.mentions.index.stale:
            self._list_files()
        return self.mentions.index.listing

    @work(thread=True, group="files", exclusive=True, exit_on_error=False)
    def _list_files(self) -> None:
        assert self.mentions is not None
        self.mentions.index.refresh()
        self.call_from_thread(self._files_listed)

    def _files_listed(self) -> None:
        prompt = self.query_one("#prompt", PromptInput)
        if "@" in prompt.value:
            prompt.refresh_completion()

    # ------------------------------------------------------------------ commands (TuiHost)

    async def show_help(self, lines: list[str]) -> None:
        await self.chat.add_notice("\n".join(lines), "info")

    async def refuse(self, line: str) -> None:
        await self.chat.add_notice(line, "dim")

    async def send_init(self, text: str) -> None:
        if self._session is None:
            await self.chat.add_notice("Not connected: your message was not sent.", "error")
            return
        await self.send_message(text, "init")

    async def open_memory(self) -> None:
        self.action_memory()

    async def open_context(self) -> None:
        self.action_context()

    async def new_conversation(self) -> None:
        """/new and /clear: a new conversation of the same agent; the chat starts empty."""
        await self._switch_conversation("new", "New conversation (the agent's memory stays).")

    async def pick_conversation(self) -> None:
        """/resume: the picker; the conversation chosen there is opened with its history."""
        if isinstance(self.screen, ConversationsScreen) or not self._rest_ready("conversations"):
            return
        assert self.api is not None and self.agent_id is not None
        self.push_screen(
            ConversationsScreen(self.api, self.agent_id, self.conversation_id),
            callback=self._on_conversation_picked,
        )

    async def _on_conversation_picked(self, conversation_id: str | None) -> None:
        if conversation_id is None or conversation_id == self.conversation_id:
            return
        await self._switch_conversation(conversation_id, "Resumed an earlier conversation.")

    async def _switch_conversation(self, conversation: str, notice: str) -> None:
        """Leave the open conversation for `conversation`: the view and the totals start
        again, and the welcome that follows shows the new one's history."""
        if self._session is None:
            await self.chat.add_notice("Not connected: no conversation to switch.", "error")
            return
        if self._running_run_id is not None:
            await self.chat.add_notice(
                "A run is going: interrupt it (esc) or let it finish, then switch.", "warning"
            )
            return
        await self.chat.clear_view()
        self._history_shown = False
        self._elsewhere.clear()
        self._unconfirmed_sends.clear()
        self._own_requests.clear()
        self._totals, self._welcome_seq = Usage(), 0
        self.status.usage = self._totals
        self.status.context = None
        await self.chat.add_notice(notice, "info")
        try:
            await self._session.switch_conversation(conversation)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the user must hear of it
            await self.chat.add_notice(f"Could not switch the conversation: {exc}", "error")

    async def close_and_quit(self) -> None:
        self._close_and_exit(None)

    async def show_cost(self) -> None:
        self._show_cost()

    @work(group="cost", exit_on_error=False)
    async def _show_cost(self) -> None:
        """The runs' totals, and what this conversation's reflections cost (asked of the
        server: idle ones ran while nobody watched)."""
        lines = [
            f"This conversation: {usage_label(self._totals)}",
            f"This session: {usage_label(self._usage)}",
        ]
        reflection = await self._reflection_cost()
        if reflection is not None:
            lines.append(f"Reflection, this conversation: {usage_label(reflection)}")
        await self.chat.add_notice("\n".join(lines), "info")

    async def reflect(self) -> None:
        """/reflect: the server reflects on the conversation; a worker waits for its answer,
        so the prompt stays usable (a message sent meanwhile runs as usual)."""
        if not self._rest_ready("a reflection") or self.conversation_id is None:
            return
        await self.chat.add_notice("Reflecting on this conversation…", "dim")
        self._reflect(self.conversation_id)

    @work(group="reflect", exit_on_error=False)
    async def _reflect(self, conversation_id: str) -> None:
        assert self.api is not None
        try:
            reflection = await self.api.reflect(conversation_id)
        except CairnError as exc:
            await self.chat.add_notice(f"No reflection: {exc.message}", "warning")
            return
        kind: NoticeKind = "info" if reflection.status == "finished" else "warning"
        await self.chat.add_notice("\n".join(reflection_lines(reflection)), kind)
        await self._reflection_cost()

    @work(group="cost", exit_on_error=False)
    async def _refresh_reflection_cost(self) -> None:
        await self._reflection_cost()

    async def _reflection_cost(self) -> Usage | None:
        """What the conversation's reflections cost, also shown in the status line; None when
        the server cannot say."""
        if self.api is None or self.conversation_id is None:
            return None
        try:
            reflections = await self.api.list_reflections(self.conversation_id)
        except CairnError:
            return None
        usage = reflection_usage(reflections)
        self.status.reflection = usage if reflections else None
        return usage

    async def model(self, name: str) -> None:
        """`/model` says which model the agent uses; `/model NAME` switches it (the server
        checks the name and keeps it for the next `cairn`)."""
        if not self._rest_ready("the model"):
            return
        assert self.api is not None and self.agent_id is not None
        try:
            if not name:
                agent = await self.api.get_agent(self.agent_id)
                await self.chat.add_notice(model_line(agent), "info")
                return
            agent = await set_model(self.api, self.agent_id, name)
        except CairnError as exc:
            await self.chat.add_notice(f"The model was not changed: {exc.message}", "warning")
            return
        self.status.model = agent.model or agent.default_model or "server default"
        await self.chat.add_notice(switched_line(agent), "info")

    async def undo(self) -> None:
        """Revert the last change applied in this session, or say why not."""
        if self._session is None:
            await self.chat.add_notice("Undo is not available in this session.", "error")
            return
        try:
            undone = await self._session.undo_last_change()
        except UndoRefused as exc:
            await self.chat.add_notice(f"Nothing was undone: {exc}.", "warning")
            return
        await self.chat.add_notice(f"Undone ({undone.tool}): {undone.describe()}.", "info")

    async def permission_mode(self, name: str) -> None:
        """`/mode` shows the permission mode, `/mode plan` sets it for this session."""
        current = self._session.mode if self._session is not None else None
        if current is None:
            await self.chat.add_notice("No permission policy in this session.", "error")
            return
        if not name:
            await self.chat.add_notice(
                f"Permission mode: {current} (modes: {', '.join(MODES)})", "info"
            )
            return
        mode = as_mode(name)
        if mode is None:
            await self.chat.add_notice(
                f"Unknown mode {name!r}; modes are {', '.join(MODES)}", "warning"
            )
            return
        self.set_mode(mode)
        await self.chat.add_notice(f"Permission mode is now {mode} for this session.", "info")

    def set_mode(self, mode: Mode) -> None:
        """Switch the permission mode of this session (shown in the status line)."""
        if self._session is not None and self._session.mode is not None:
            self._session.set_mode(mode)
            self.status.mode = mode

    async def compact(self, focus: str | None) -> None:
        if self._session is None:
            await self.chat.add_notice("Not connected: nothing was compacted.", "error")
            return
        if self._running_run_id is None:
            self.status.activity = COMPACTING
        self._compact(focus)

    @work(group="send", exit_on_error=False)
    async def _compact(self, focus: str | None) -> None:
        assert self._session is not None
        try:
            await self._session.compact(focus)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the user must hear of it
            if self.status.activity == COMPACTING:
                self._set_running(self._running_run_id)
            await self.chat.add_notice(f"Could not ask for a compaction: {exc}", "error")

    @work(group="send", exit_on_error=False)
    async def _send(self, text: str, command: UserCommand | None = None) -> None:
        await self._deliver(text, command)

    async def _deliver(self, text: str, command: UserCommand | None) -> bool:
        if self._session is None:
            await self.chat.add_notice("Not connected: your message was not sent.", "error")
            return False
        try:
            await self._session.send_user_message(text, command)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the user must hear of it
            if text.strip() in self._unconfirmed_sends:
                self._unconfirmed_sends.remove(text.strip())
            await self.chat.add_notice(f"Your message was not sent: {exc}", "error")
            return False
        return True

    # ------------------------------------------------------------------ memory and context

    def action_memory(self) -> None:
        """Open the memory screen (once: asking again while it is open does nothing)."""
        if isinstance(self.screen, MemoryScreen) or not self._rest_ready("memory"):
            return
        if isinstance(self.screen, ContextScreen):
            self.screen.dismiss(None)
        assert self.api is not None and self.agent_id is not None
        self.push_screen(MemoryScreen(self.api, self.agent_id, self._memory_drafts))

    def action_context(self) -> None:
        if isinstance(self.screen, ContextScreen) or not self._rest_ready("the context"):
            return
        if self.conversation_id is None:
            self.notify("No conversation yet.", severity="warning")
            return
        assert self.api is not None
        self.push_screen(ContextScreen(self.api, self.conversation_id))

    def _rest_ready(self, what: str) -> bool:
        if self.api is None:
            self.notify(f"Cannot show {what}: no server address is known.", severity="error")
            return False
        if self.agent_id is None:
            self.notify(f"Cannot show {what} before the server has answered.", severity="warning")
            return False
        return True

    # ------------------------------------------------------------------ interrupt and quit

    def action_interrupt(self) -> None:
        if self._running_run_id is not None:
            self._interrupt()

    def action_ctrl_c(self) -> None:
        """Ctrl-C stops the running work first; pressed again soon after, it quits."""
        now = time.monotonic()
        if now - self._last_ctrl_c <= CTRL_C_AGAIN_S:
            self._close_and_exit(None)
            return
        self._last_ctrl_c = now
        if self._running_run_id is not None:
            self._interrupt()
        self.notify("Press Ctrl-C again to quit.", timeout=CTRL_C_AGAIN_S)

    def action_cycle_mode(self) -> None:
        """Shift+Tab: the next everyday permission mode (default → accept-edits → plan); over
        another screen (memory, a dialog) it moves the focus back, as it does elsewhere."""
        if len(self.screen_stack) > 1:
            self.screen.focus_previous()
            return
        current = self._session.mode if self._session is not None else None
        if current is None:
            return
        position = CYCLED_MODES.index(current) + 1 if current in CYCLED_MODES else 0
        following = CYCLED_MODES[position % len(CYCLED_MODES)]
        self.set_mode(following)
        self.notify(f"Permission mode: {following}", timeout=2)

    def on_interrupt_requested(self, _message: InterruptRequested) -> None:
        self._interrupt()

    def _interrupt(self) -> None:
        self.status.activity = INTERRUPTING
        self._cancel_run()

    @work(group="control", exit_on_error=False)
    async def _cancel_run(self) -> None:
        if self._session is None:
            return
        try:
            await self._session.cancel()
        except Exception as exc:  # noqa: BLE001 - whatever failed, the user must hear of it
            self._set_running(self._running_run_id)
            await self.chat.add_notice(f"Could not interrupt the run: {exc}", "error")

    def action_scroll_chat(self, direction: int) -> None:
        """Page through the chat while the prompt keeps the focus."""
        chat = self.chat
        if direction < 0:
            chat.release_anchor()  # reading back: new output must not yank the view down
            chat.scroll_page_up()
        elif chat.scroll_y + chat.container_size.height >= chat.max_scroll_y:
            chat.anchor()  # back at the bottom: follow new output again
        else:
            chat.scroll_page_down()

    async def action_quit(self) -> None:
        self._close_and_exit(None)

    def _on_setup_choice(self, choice: SetupChoice | None) -> None:
        if choice != "demo" and self._model_problem is not None:
            problem = self._model_problem
            if problem.exit_code == ExitCode.MODEL:  # the provider lacks it: its own line
                self.failure = problem
            else:
                first_line = str(problem).splitlines()[0]
                self.failure = UsageError(f"{first_line} (README, Configuration)")
        self._close_and_exit(DEMO_RESULT if choice == "demo" else None)

    @work(group="quit", exit_on_error=False)
    async def _close_and_exit(self, result: str | None) -> None:
        """Close the session (bounded, so a dead server can't hold the user), then exit.

        Asking to quit again while the session closes exits at once.
        """
        if self._quitting:
            self.exit(result)
            return
        self._quitting = True
        self.status.activity = "closing…"
        if self._session is not None:
            try:
                await asyncio.wait_for(self._session.close(), CLOSE_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - quitting must not fail on a broken session
                self.log.warning(f"closing the session failed: {exc!r}")
        if self.api is not None:
            try:
                await self.api.aclose()
            except Exception as exc:  # noqa: BLE001 - as above
                self.log.warning(f"closing the REST client failed: {exc!r}")
        self.exit(result)

    def _set_running(self, run_id: str | None) -> None:
        self._running_run_id = run_id
        self._retrying = False
        self.status.activity = RUNNING if run_id is not None else ""


def _as_typed(item: HistoryItem) -> HistoryItem:
    """A user message of the history as it was typed, its attached files named after it."""
    if item.role != "user":
        return item
    typed, attached = split_attachments(item.text)
    if not attached:
        return item
    named = "\n".join(f"(attached {path})" for path in attached)
    return item.model_copy(update={"text": f"{typed}\n\n{named}"})

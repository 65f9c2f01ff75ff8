"""The seam between a client session and what shows it (the TUI or headless output).

Owns the SessionListener protocol the session calls, the SessionControl it offers back, and
following one run's events (RunFollower).
"""

from __future__ import annotations

import asyncio
from typing import Literal, Protocol

from cairn_protocol import AssistantMessage, ErrorEvent, RunFinished, RunStarted, ServerFrame
from cairn_protocol.messages import UserCommand

from cairn_client.errors import CairnError
from cairn_client.policy.types import Approval, Mode, Verdict
from cairn_client.tools.base import PreparedCall, ToolOutcome
from cairn_client.undo import AppliedChange

ConnectionState = Literal["connecting", "connected", "reconnecting", "closed", "failed"]


class SessionListener(Protocol):
    """Implemented by the TUI app and by headless mode; called from the session's task."""

    def server_event(self, event: ServerFrame) -> None:
        """Every server event, in order (welcome, deltas, messages, requests, run_finished...)."""

    def connection_changed(self, state: ConnectionState, detail: str) -> None:
        """The connection's state, with a sentence for the user (e.g. why it was lost)."""

    def tool_handled(self, prepared: PreparedCall, verdict: Verdict, outcome: ToolOutcome) -> None:
        """A tool request was decided and (if allowed) executed; outcome is what the model gets."""

    async def ask_approval(self, prepared: PreparedCall, verdict: Verdict) -> Approval:
        """Ask the person: allow once, or as `verdict.options` offers, or deny with a reason."""

    def notice(self, text: str) -> None:
        """One line the person must read once (an MCP server that did not start)."""


class SessionControl(Protocol):
    """What a front end can do with a running session: talk, compact, switch conversation,
    switch the permission mode, take back the last change."""

    async def send_user_message(self, text: str, command: UserCommand | None = None) -> None: ...

    async def compact(self, instructions: str | None = None) -> None:
        """Ask the server to compact the conversation now (/compact)."""

    async def cancel(self) -> None: ...

    async def switch_conversation(self, conversation: str) -> None:
        """Open another conversation of the same agent ("new" or its id): its welcome, with
        its history, comes next (/new, /clear, /resume)."""

    async def close(self) -> None: ...

    @property
    def mode(self) -> Mode | None:
        """The permission mode; None when the session has no policy."""

    def set_mode(self, mode: Mode) -> None:
        """Switch the permission mode for the rest of the session."""

    async def undo_last_change(self) -> AppliedChange:
        """Revert the last change the session applied; UndoRefused says why not."""

    def startup_notes(self) -> list[str]:
        """What the user should know before the first request (e.g. no sandbox)."""

    @property
    def settings_file(self) -> str:
        """The settings file an allow rule is written to, as shown to the user."""


class RunRefused(CairnError):
    """The server answered the message with an error instead of starting a run."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# Errors the server answers a user message with when it cannot start its run.
REFUSING_CODES = frozenset({"no_model", "internal", "run_in_progress"})


class RunFollower:
    """Follows one run at a time for a front end: the run started for a text it sent (or
    one already going), the run's last answer, and a future that resolves when it ends."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self.last_answer = ""
        self._expected_text: str | None = None
        self.finished: asyncio.Future[RunFinished] = asyncio.get_running_loop().create_future()

    def follow(self, *, text: str | None = None, run_id: str | None = None) -> None:
        """From now on, the run started for `text`, or the run `run_id`."""
        if self.finished.done():
            self.finished = asyncio.get_running_loop().create_future()
        self.run_id, self._expected_text, self.last_answer = run_id, text, ""

    def sees(self, event: ServerFrame) -> bool:
        """Take in one event; True when it belongs to the followed run. An error that refuses
        the message it waits for ends the wait with RunRefused."""
        waiting = self.run_id is None and self._expected_text is not None
        if waiting and isinstance(event, ErrorEvent) and event.code in REFUSING_CODES:
            if not self.finished.done():
                self.finished.set_exception(RunRefused(event.code, event.message))
            return False
        if (
            isinstance(event, RunStarted)
            and self.run_id is None
            and event.user_text == self._expected_text
        ):
            self.run_id = event.run_id
        if self.run_id is None or getattr(event, "run_id", self.run_id) != self.run_id:
            return False
        if isinstance(event, AssistantMessage) and event.text.strip():
            self.last_answer = event.text
        if isinstance(event, RunFinished) and not self.finished.done():
            self.finished.set_result(event)
        return True

"""The seam between a client session and what shows it (the TUI or headless output).

Owns the SessionListener protocol the session calls and the SessionControl it offers back.
"""

from __future__ import annotations

from typing import Literal, Protocol

from cairn_protocol import ServerFrame
from cairn_protocol.messages import UserCommand

from cairn_client.policy.types import Approval, Verdict
from cairn_client.tools.base import PreparedCall, ToolOutcome

ConnectionState = Literal["connecting", "connected", "reconnecting", "closed", "failed"]


class SessionListener(Protocol):
    """Implemented by the TUI app and by headless mode; called from the session's task."""

    def server_event(self, event: ServerFrame) -> None:
        """Every server event, in order (welcome, deltas, messages, requests, run_finished...)."""

    def connection_changed(self, state: ConnectionState, detail: str) -> None:
        """The connection's state, with a sentence for the user (e.g. why it was lost)."""

    def tool_handled(self, prepared: PreparedCall, verdict: Verdict, outcome: ToolOutcome) -> None:
        """A tool request was decided and (if allowed) executed; outcome is what the model gets."""

    async def ask_approval(self, prepared: PreparedCall) -> Approval:
        """Ask the person: allow once, allow for the session, or deny with a reason."""


class SessionControl(Protocol):
    """What a front end can do with a running session."""

    async def send_user_message(self, text: str, command: UserCommand | None = None) -> None: ...

    async def compact(self, instructions: str | None = None) -> None:
        """Ask the server to compact the conversation now (/compact)."""

    async def cancel(self) -> None: ...

    async def close(self) -> None: ...

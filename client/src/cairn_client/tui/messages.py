"""Typed Textual messages that carry session callbacks into the app's message queue.

Owns the hand-over from SessionListener calls (made by the session) to UI handlers (run in order).
"""

from __future__ import annotations

import asyncio

from cairn_protocol import ServerFrame, ToolRequest
from textual.message import Message

from cairn_client.listener import ConnectionState
from cairn_client.policy.types import Verdict
from cairn_client.tools.base import PreparedCall, ToolOutcome


class SessionEvent(Message):
    """A server event arrived (welcome, deltas, messages, requests, run_finished...)."""

    def __init__(self, event: ServerFrame) -> None:
        super().__init__()
        self.event = event


class ConnectionChanged(Message):
    """The connection to the server changed state; `detail` is a sentence for the user."""

    def __init__(self, state: ConnectionState, detail: str) -> None:
        super().__init__()
        self.state: ConnectionState = state
        self.detail = detail


class ToolHandled(Message):
    """A tool request was decided and, if allowed, executed."""

    def __init__(self, prepared: PreparedCall, verdict: Verdict, outcome: ToolOutcome) -> None:
        super().__init__()
        self.prepared = prepared
        self.verdict = verdict
        self.outcome = outcome


class InterruptRequested(Message):
    """The user asked to interrupt the running run (Esc, here or on the approval screen)."""


class ToolAsked(Message):
    """The person is asked about a request (`waiting`), or has answered it; `shown` resolves
    once the transcript shows it (the question waits for that, so the dialog never covers a
    transcript still catching up)."""

    def __init__(
        self, request: ToolRequest, waiting: bool, shown: asyncio.Future[None] | None = None
    ) -> None:
        super().__init__()
        self.request = request
        self.waiting = waiting
        self.shown = shown

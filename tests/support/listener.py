"""A SessionListener for tests: records what the session reports, answers approvals from a list.

Plays the person at the keyboard for client-level end-to-end tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cairn_client.listener import ConnectionState
from cairn_client.policy.types import Approval, Verdict
from cairn_client.tools.base import PreparedCall, ToolOutcome
from cairn_protocol import ServerFrame

from support.waiting import scaled


class RecordingListener:
    def __init__(self, answers: list[Approval] | None = None) -> None:
        self.events: list[ServerFrame] = []
        self.states: list[tuple[ConnectionState, str]] = []
        self.notices: list[str] = []
        self.handled: list[tuple[PreparedCall, Verdict, ToolOutcome]] = []
        self.asked: list[PreparedCall] = []
        self.answers = list(answers or [])
        self.hold_approvals = asyncio.Event()  # while clear, approvals wait (a person thinking)
        self.hold_approvals.set()
        self._changed = asyncio.Event()

    def server_event(self, event: ServerFrame) -> None:
        self.events.append(event)
        self._changed.set()

    def connection_changed(self, state: ConnectionState, detail: str) -> None:
        self.states.append((state, detail))
        self._changed.set()

    def notice(self, text: str) -> None:
        self.notices.append(text)
        self._changed.set()

    def tool_handled(self, prepared: PreparedCall, verdict: Verdict, outcome: ToolOutcome) -> None:
        self.handled.append((prepared, verdict, outcome))
        self._changed.set()

    async def ask_approval(self, prepared: PreparedCall, verdict: Verdict) -> Approval:
        self.asked.append(prepared)
        self._changed.set()
        await self.hold_approvals.wait()
        return self.answers.pop(0) if self.answers else Approval("deny", "no scripted answer")

    def of_type(self, frame_type: str) -> list[ServerFrame]:
        return [e for e in self.events if e.type == frame_type]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 20) -> None:
        async with asyncio.timeout(scaled(timeout)):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

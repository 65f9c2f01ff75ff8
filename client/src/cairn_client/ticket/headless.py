"""A ticket without a person: turns through a headless session, the plan approved as proposed.

Owns the driver that prints progress to stderr and denies whatever would need a person
(with a reason the model reads), counting those denials as approvals asked and not given.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import TextIO

from cairn_protocol import ServerFrame, Welcome
from websockets.exceptions import ConnectionClosed

from cairn_client.headless import HeadlessListener, session_result
from cairn_client.listener import RunRefused
from cairn_client.policy.types import Approval, Mode, Verdict
from cairn_client.session import ClientSession, NotConnected
from cairn_client.ticket.flow import PlanDecision, TurnResult
from cairn_client.ticket.state import TicketActivity
from cairn_client.tools.base import PreparedCall, ToolOutcome


class TicketListener(HeadlessListener):
    """Headless output, plus the tool activity the ticket's summary reports."""

    def __init__(self, activity: TicketActivity, *, out: TextIO, err: TextIO) -> None:
        super().__init__(as_json=False, out=out, err=err)
        self.activity = activity

    def server_event(self, event: ServerFrame) -> None:
        if isinstance(event, Welcome) and event.running_run_id and not self.welcome.done():
            # A run left going by an earlier session: follow it before its events arrive.
            self.run.follow(run_id=event.running_run_id)
        super().server_event(event)

    def tool_handled(self, prepared: PreparedCall, verdict: Verdict, outcome: ToolOutcome) -> None:
        super().tool_handled(prepared, verdict, outcome)
        self.activity.tool_handled(prepared, outcome)

    async def ask_approval(self, prepared: PreparedCall, verdict: Verdict) -> Approval:
        self.activity.approval_answered(given=False)
        return await super().ask_approval(prepared, verdict)


class HeadlessTicketDriver:
    """Implements TicketDriver over a running headless session."""

    def __init__(
        self,
        session: ClientSession,
        listener: TicketListener,
        runner: asyncio.Task[None],
        welcome: Welcome,
        configured_mode: Mode,
        err: TextIO = sys.stderr,
    ) -> None:
        self.session = session
        self.listener = listener
        self.runner = runner
        self.welcome = welcome
        self.configured_mode = configured_mode
        self.err = err

    @property
    def conversation_id(self) -> str | None:
        return self.welcome.conversation_id

    async def run_turn(self, text: str) -> TurnResult:
        self.listener.expect_run_for(text)
        try:
            await self.session.send_user_message(text)
        except (NotConnected, ConnectionClosed) as exc:
            return TurnResult(None, "not_sent", "", detail=str(exc))
        return await self._finished()

    async def finish_running(self) -> TurnResult | None:
        if self.welcome.running_run_id is None:
            return None
        self.say("a run of this ticket is still going; waiting for it")
        return await self._finished()  # followed since the welcome

    async def review_plan(self, plan: str) -> PlanDecision:
        self.say("the plan is approved as proposed (headless: nobody to review it)")
        return PlanDecision("approve", plan)

    def set_mode(self, mode: Mode | None) -> None:
        self.session.policy.set_mode(mode or self.configured_mode)

    def say(self, line: str) -> None:
        print(f"cairn: {line}", file=self.err, flush=True)

    async def _finished(self) -> TurnResult:
        with contextlib.suppress(RunRefused):  # a refusal is a result too
            await session_result(self.listener.run.finished, self.runner)
        return TurnResult.of(self.listener.run)

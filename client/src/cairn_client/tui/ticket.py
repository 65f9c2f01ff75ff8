"""A ticket in the TUI: the flow runs beside the person, who approves its plan and its tools.

Owns the driver that sends the flow's turns as the user's messages in the app, shows the
plan review screen, runs the flow's git and GitHub steps in thread workers (the UI never
waits on a push) and puts the summary in the chat when the ticket ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from cairn_protocol import ServerFrame, Welcome
from textual.worker import WorkerFailed

from cairn_client.api import CairnApi
from cairn_client.listener import RunFollower, SessionListener
from cairn_client.models import ModelRefused, unusable_model
from cairn_client.policy.types import Approval, Mode, Verdict
from cairn_client.ticket.command import Started, TicketRun, undo_start
from cairn_client.ticket.flow import (
    FinishOptions,
    PlanDecision,
    TicketFlow,
    TicketResult,
    TurnResult,
)
from cairn_client.tools.base import PreparedCall, ToolOutcome
from cairn_client.tui.app import CairnApp, SessionRunner
from cairn_client.tui.screens.plan import PlanScreen

T = TypeVar("T")


class TuiTicketDriver:
    """Implements TicketDriver and the app's AppCompanion."""

    def __init__(self, started: Started, options: FinishOptions, configured_mode: Mode) -> None:
        self.started = started
        self.options = options
        self.activity = started.state.activity
        self.configured_mode = configured_mode
        self.result: TicketResult | None = None
        self.unusable_model: ModelRefused | None = None
        self._app: CairnApp | None = None
        self._welcome: Welcome | None = None
        self._run: RunFollower | None = None

    @property
    def app(self) -> CairnApp:
        assert self._app is not None, "the driver is not attached to an app"
        return self._app

    # ------------------------------------------------------------------ AppCompanion

    def attach(self, app: CairnApp) -> None:
        self._app = app

    def server_event(self, event: ServerFrame) -> None:
        if isinstance(event, Welcome):
            self._on_welcome(event)
        elif self._run is not None:
            self._run.sees(event)

    def tool_handled(self, prepared: PreparedCall, verdict: Verdict, outcome: ToolOutcome) -> None:
        self.activity.tool_handled(prepared, outcome)

    def approval_answered(self, approval: Approval) -> None:
        self.activity.approval_answered(given=approval.kind != "deny")

    def _on_welcome(self, welcome: Welcome) -> None:
        if self._welcome is not None:
            return  # a reconnect: the flow is already going
        self._welcome = welcome
        self.unusable_model = unusable_model(welcome)
        if self.unusable_model is not None:
            self.app.call_later(
                self.app.chat.add_notice,
                f"The ticket cannot start: {self.unusable_model}. Quit with ctrl+q.",
                "error",
            )
            return
        if welcome.running_run_id:  # left going by an earlier session: follow it at once
            self._follower().follow(run_id=welcome.running_run_id)
        self.app.run_worker(self._run_flow(), name="ticket", group="ticket", exit_on_error=False)

    async def _run_flow(self) -> None:
        flow = TicketFlow(
            self.started.state,
            self.started.branch,
            self,
            self.options,
            run_blocking=self.in_thread_worker,
        )
        try:
            self.result = await flow.run()
        except Exception as exc:  # noqa: BLE001 - shown; the state file allows a resume
            await self.app.chat.add_notice(
                f"The ticket stopped: {exc}; continue with cairn ticket --resume", "error"
            )
            return
        summary = "\n".join(self.result.summary_lines())
        await self.app.chat.add_notice(summary, "info" if self.result.exit_code == 0 else "warning")

    async def in_thread_worker(self, step: Callable[[], T]) -> T:
        """Run a blocking step of the flow (commit, push, pull request) in a thread worker,
        so the app keeps answering however long it takes."""
        worker = self.app.run_worker(
            step, name="ticket-git", group="ticket-git", thread=True, exit_on_error=False
        )
        try:
            return await worker.wait()
        except WorkerFailed as failed:
            raise failed.error from None

    # ------------------------------------------------------------------ TicketDriver

    @property
    def conversation_id(self) -> str | None:
        return self._welcome.conversation_id if self._welcome else None

    async def run_turn(self, text: str) -> TurnResult:
        self._follower().follow(text=text)
        if not await self.app.send_message_now(text):
            return TurnResult(None, "not_sent", "", detail="the message could not be sent")
        return await self._wait()

    async def finish_running(self) -> TurnResult | None:
        if self._welcome is None or self._welcome.running_run_id is None:
            return None
        self.say("A run of this ticket is still going; waiting for it.")
        return await self._wait()  # followed since the welcome

    async def review_plan(self, plan: str) -> PlanDecision:
        decided: asyncio.Future[PlanDecision] = asyncio.get_running_loop().create_future()

        def settle(decision: PlanDecision | None) -> None:
            if not decided.done():
                decided.set_result(decision or PlanDecision("stop"))

        self.app.push_screen(PlanScreen(plan, self.started.state.ticket.title), callback=settle)
        return await decided

    def set_mode(self, mode: Mode | None) -> None:
        self.app.set_mode(mode or self.configured_mode)

    def say(self, line: str) -> None:
        self.app.call_later(self.app.chat.add_notice, line, "info")

    def _follower(self) -> RunFollower:
        if self._run is None:
            self._run = RunFollower()
        return self._run

    async def _wait(self) -> TurnResult:
        run = self._follower()
        await asyncio.wait([run.finished])  # a refusal is a result too
        return TurnResult.of(run)


def run_ticket_tui(ticket: TicketRun) -> int:
    """Run the ticket in the app until the person quits; the exit code of `cairn ticket`."""
    started, launch, report = ticket.started, ticket.launch, ticket.report
    driver = TuiTicketDriver(started, ticket.options, ticket.configured_mode)
    conversation = started.state.conversation_id or "new"

    def start_session(listener: SessionListener) -> SessionRunner:
        return launch.session(listener, conversation)

    app = CairnApp(
        start_session,
        workspace_name=f"{launch.workspace.identity.display_name} · {started.state.branch}",
        api=CairnApi(launch.endpoint.resolve, launch.endpoint.token),
        companion=driver,
    )
    try:
        app.run()
    finally:
        launch.shutdown_now()
    if driver.unusable_model is not None:
        undo_start(started)
        return report.failure(str(driver.unusable_model), driver.unusable_model.exit_code)
    if driver.result is None:
        return report.failure(
            "the ticket was left unfinished; continue with cairn ticket --resume", 1
        )
    return report.result(driver.result)

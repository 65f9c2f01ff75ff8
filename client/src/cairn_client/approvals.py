"""The approval requests waiting for the person: one shown at a time, answered or withdrawn.

Owns the queue between the session asking (`ask`) and a front end showing a question (the
TUI's approval screen): in order, and a request the server settled or the run ended closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cairn_client.policy.types import Approval, Verdict
from cairn_client.tools.base import PreparedCall

WITHDRAWN = "the request was withdrawn"

Answer = Callable[[Approval | None], None]


class ApprovalView(Protocol):
    """A question on screen; `withdraw` closes it unanswered (a no-op once answered)."""

    def withdraw(self) -> None: ...


# Shows one question; the view calls `answer` once (None: closed without an answer).
ShowApproval = Callable[[PreparedCall, Verdict, Answer], ApprovalView]


@dataclass
class _Pending:
    prepared: PreparedCall
    verdict: Verdict
    answer: asyncio.Future[Approval]
    view: ApprovalView | None = field(default=None)

    @property
    def run_id(self) -> str:
        return self.prepared.request.run_id

    def settle(self, approval: Approval | None) -> None:
        if not self.answer.done():
            self.answer.set_result(approval or Approval(kind="deny", reason=WITHDRAWN))


class ApprovalQueue:
    """Pending approval requests by call id, shown one at a time in the order asked."""

    def __init__(self, show: ShowApproval) -> None:
        self._show = show
        self._pending: dict[str, _Pending] = {}
        self._shown: _Pending | None = None

    async def ask(self, prepared: PreparedCall, verdict: Verdict) -> Approval:
        """Wait for the person's answer (a withdrawal answers "deny")."""
        answer: asyncio.Future[Approval] = asyncio.get_running_loop().create_future()
        pending = _Pending(prepared, verdict, answer)
        self._pending[prepared.request.call_id] = pending
        self._show_next()
        try:
            return await answer
        finally:
            self._pending.pop(prepared.request.call_id, None)
            if pending.view is not None:
                pending.view.withdraw()  # closes it if the session stopped asking
            if self._shown is pending:
                self._shown = None
                self._show_next()

    def withdraw(self, call_id: str) -> None:
        """The server settled or withdrew the call: its question ends unanswered."""
        pending = self._pending.get(call_id)
        if pending is not None:
            self._withdraw(pending)

    def withdraw_run(self, run_id: str) -> None:
        """The run ended: every question it asked ends unanswered."""
        for pending in [p for p in self._pending.values() if p.run_id == run_id]:
            self._withdraw(pending)

    def _withdraw(self, pending: _Pending) -> None:
        pending.settle(None)
        if pending.view is not None:
            pending.view.withdraw()

    def _show_next(self) -> None:
        if self._shown is not None:
            return
        waiting = next((p for p in self._pending.values() if not p.answer.done()), None)
        if waiting is not None:
            self._shown = waiting
            waiting.view = self._show(waiting.prepared, waiting.verdict, waiting.settle)

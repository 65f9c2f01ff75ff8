"""The plan review of `cairn ticket`: the agent's plan, and the developer's answer to it.

Owns the keys y (approve), e (edit, then ctrl+s approves the edited plan), n (reject with
feedback the agent reads, sent with Enter) and Esc (back to the plan from the editor or the
feedback line; on the plan itself, stop the ticket).
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Markdown, TextArea

from cairn_client.ticket.flow import PlanDecision

NO_FEEDBACK = "the developer rejected the plan without saying why; propose a different one"


class PlanScreen(ModalScreen[PlanDecision]):
    """Shows a proposed plan and returns the developer's PlanDecision."""

    CSS_PATH = "plan.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "approve", "Approve", id="plan.approve"),
        Binding("e", "edit", "Edit", id="plan.edit"),
        Binding("ctrl+s", "approve_edited", "Approve edited", id="plan.approve_edited"),
        Binding("n", "reject", "Reject…", id="plan.reject"),
        Binding("escape", "back", "Back to the plan", id="plan.back"),
        Binding("escape", "stop", "Stop the ticket", id="plan.stop"),
    ]

    def __init__(self, plan: str, title: str) -> None:
        super().__init__()
        self.plan = plan
        self.ticket_title = title
        self._editing = False
        self._asking_feedback = False

    def compose(self) -> ComposeResult:
        with Vertical(id="plan-dialog"):
            yield Label(f"Plan for {self.ticket_title}", id="plan-title", markup=False)
            with VerticalScroll(id="plan-view"):
                yield Markdown(self.plan, id="plan-body")
            yield TextArea(self.plan, id="plan-editor")
            yield Input(placeholder="What should change? (Enter sends)", id="plan-feedback")
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        typing = self._editing or self._asking_feedback
        if action in ("approve", "edit", "reject"):
            return not typing  # letters typed into the editor or feedback are not answers
        if action == "approve_edited":
            return self._editing
        if action == "back":
            return typing
        if action == "stop":
            return not typing
        return True

    def action_approve(self) -> None:
        self.dismiss(PlanDecision("approve", self.plan))

    def action_edit(self) -> None:
        self._editing = True
        self.query_one("#plan-view").display = False
        editor = self.query_one("#plan-editor", TextArea)
        editor.display = True
        editor.focus()
        self.refresh_bindings()

    def action_approve_edited(self) -> None:
        edited = self.query_one("#plan-editor", TextArea).text.strip()
        self.dismiss(PlanDecision("approve", edited or self.plan))

    def action_reject(self) -> None:
        self._asking_feedback = True
        feedback = self.query_one("#plan-feedback", Input)
        feedback.display = True
        feedback.focus()
        self.refresh_bindings()

    def action_back(self) -> None:
        """Leave the editor or the feedback line without sending; what was typed stays there
        for another try."""
        self._editing = self._asking_feedback = False
        self.query_one("#plan-editor", TextArea).display = False
        self.query_one("#plan-feedback", Input).display = False
        view = self.query_one("#plan-view")
        view.display = True
        view.focus()
        self.refresh_bindings()

    def action_stop(self) -> None:
        self.dismiss(PlanDecision("stop"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(PlanDecision("reject", event.value.strip() or NO_FEEDBACK))

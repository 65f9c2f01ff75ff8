"""The approval dialog: exactly what a tool call will do, and the user's answer to it.

Owns the keys y (allow once), a (allow for the session), p (allow always), n (deny with a reason)
and Esc (deny and interrupt), offered as the policy's options say, and closing by itself when the
server withdraws the request.
"""

from __future__ import annotations

from typing import ClassVar

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static

from cairn_client.approvals import WITHDRAWN
from cairn_client.formatting import helper_scope, whose
from cairn_client.policy.types import AnswerOptions, Approval
from cairn_client.tools.base import PreparedCall
from cairn_client.tui.messages import InterruptRequested

DENIED_BY_USER = "denied by the user"
INTERRUPTED_BY_USER = "interrupted by the user"


class ApprovalScreen(ModalScreen[Approval]):
    """Shows the preview of one prepared call and returns the user's Approval."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "allow_once", "Allow once", id="approval.allow_once"),
        Binding("a", "allow_session", "Allow session", id="approval.allow_session"),
        Binding("p", "allow_always", "Allow always", id="approval.allow_always"),
        Binding("n", "deny", "Deny…", id="approval.deny"),
        Binding("escape", "interrupt", "Deny & interrupt", id="approval.interrupt"),
    ]

    def __init__(
        self,
        prepared: PreparedCall,
        options: AnswerOptions | None = None,
        settings_file: str = "your settings.toml",
    ) -> None:
        super().__init__()
        self.prepared = prepared
        self.options = options or AnswerOptions()
        self.settings_file = settings_file
        self._answered = False
        self._withdraw_when_shown = False
        self._asking_reason = False

    def compose(self) -> ComposeResult:
        preview = self.prepared.preview
        with Vertical(id="approval-dialog"):
            helper = self.prepared.request.helper
            yield Label(whose(helper) + preview.title, id="approval-title", markup=False)
            if helper is not None:
                yield Label(helper_scope(helper), id="approval-helper", markup=False)
            for warning in preview.warnings:
                yield Label(f"⚠ {warning}", classes="approval-warning", markup=False)
            yield Label(f"tool: {self.prepared.tool}", id="approval-tool", markup=False)
            with VerticalScroll(id="approval-preview"):
                yield Static(self._preview_body(), id="approval-body")
            yield Label(self.hint(), id="approval-hint", markup=False)
            yield Input(
                placeholder="Why not? (Enter sends; empty: denied by the user)",
                id="approval-reason",
            )
        yield Footer()

    def _preview_body(self) -> Syntax:
        preview = self.prepared.preview
        return Syntax(
            preview.body,
            preview.language or "text",
            theme="ansi_dark",  # ANSI colours follow the app's theme; no painted background
            word_wrap=True,
        )

    def hint(self) -> str:
        """The rule the policy offers to stop this asking, or its reason why none can."""
        rule = self.options.rule
        if rule is None:
            reason = self.options.no_rule_reason
            return reason[:1].upper() + reason[1:] + "."
        return (
            f'p saves allow = ["{rule}"] under [permissions] in {self.settings_file} '
            "and stops the asking"
        )

    def action_allow_always(self) -> None:
        self.answer(Approval(kind="always"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While the reason is typed, y/a/p/n are letters of the reason, not answers.
        answers = ("allow_once", "allow_session", "allow_always", "deny")
        if self._asking_reason and action in answers:
            return False
        if action == "allow_always":  # only where the policy offers a rule
            return self.options.rule is not None
        if action == "allow_session":
            return self.options.session is not None
        return True

    def action_allow_once(self) -> None:
        self.answer(Approval(kind="once"))

    def action_allow_session(self) -> None:
        self.answer(Approval(kind="session"))

    def action_deny(self) -> None:
        self._asking_reason = True
        reason = self.query_one("#approval-reason", Input)
        reason.display = True
        reason.focus()
        self.refresh_bindings()

    def action_interrupt(self) -> None:
        self.answer(Approval(kind="deny", reason=INTERRUPTED_BY_USER))
        self.app.post_message(InterruptRequested())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.answer(Approval(kind="deny", reason=event.value.strip() or DENIED_BY_USER))

    def answer(self, approval: Approval) -> None:
        """Close with this answer, once: a later answer or withdrawal is ignored."""
        if self._answered:
            return
        self._answered = True
        self.dismiss(approval)

    def withdraw(self) -> None:
        """The request ended without an answer: close now, or as soon as this screen is on top."""
        if self._answered:
            return
        if self.is_active:
            self.answer(Approval(kind="deny", reason=WITHDRAWN))
        else:
            self._withdraw_when_shown = True

    def on_screen_resume(self) -> None:
        if self._withdraw_when_shown:
            self.answer(Approval(kind="deny", reason=WITHDRAWN))

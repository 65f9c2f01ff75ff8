"""The phases of a ticket: plan read-only, review the plan, implement, then commit and report.

Owns what the agent is asked at each phase and the result of the whole ticket; a front end
(headless or the TUI) supplies the turns and the plan review through `TicketDriver`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from cairn_protocol import normalise_origin
from cairn_protocol.messages import Usage
from cairn_protocol.tools import ShellArgs

from cairn_client.policy.types import Mode, Verdict
from cairn_client.ticket import git
from cairn_client.ticket.github import (
    create_pull_request,
    github_api_url,
    parse_github_remote,
)
from cairn_client.ticket.sources import TicketError
from cairn_client.ticket.state import TicketState, save_state
from cairn_client.tools.base import PreparedCall, ToolOutcome

MAX_PLAN_ROUNDS = 5
TEST_COMMAND = re.compile(
    r"(^|[\s;&|(])(pytest|py\.test|tox|nox|unittest|jest|vitest|rspec|phpunit|ctest"
    r"|(npm|pnpm|yarn|bun)( run)? test|go test|cargo test|mvn( -\S+)* (test|verify)"
    r"|gradle(w)? test|\./gradlew test|make (test|check)|dotnet test|mix test)\b"
)

PLAN_PROMPT = """\
Work on the ticket below in this repository, on the branch {branch}. Start by exploring the \
code read-only: you are in plan mode, so edits and shell commands are refused. Then answer with \
a plan and nothing else: the files to change and the change in each, and how you will test it \
(the project's test command, from your project memory if you know it). Do not edit anything yet.

{ticket}"""
REVISE_PROMPT = """\
The plan was not approved. The developer's feedback:

{feedback}

Propose a revised plan (still read-only), answering with the plan only."""
REPLAN_PROMPT = """\
You were interrupted before the plan for the ticket above was settled. Propose the plan now \
(read-only), answering with the plan only."""
IMPLEMENT_PROMPT = """\
The plan below is approved. Implement it now: make the edits, then run the project's tests \
(the command in your project memory; find it and note it there if you do not know it yet) and \
fix what fails. Before you finish, update your `project` memory block with what this ticket \
taught you about the codebase (test command, conventions, pitfalls), so the next ticket starts \
knowing it. End with a short summary of what you changed.

Approved plan:

{plan}"""
CONTINUE_PROMPT = """\
You were interrupted while implementing the approved plan. The working tree holds your changes \
so far: check what is done, finish the rest, run the tests, and end with a short summary."""


@dataclass(frozen=True)
class TurnResult:
    """How one run of the agent ended, with its last answer."""

    run_id: str | None
    stop_reason: str
    answer: str
    usage: Usage = field(default_factory=Usage)
    detail: str | None = None


@dataclass(frozen=True)
class PlanDecision:
    """The developer's answer to a plan: approve (`text` is the plan, maybe edited), reject
    (`text` is the feedback the agent gets), or stop the ticket here."""

    kind: Literal["approve", "reject", "stop"]
    text: str = ""


class TicketDriver(Protocol):
    """What a front end does for the flow: runs turns, shows the plan, switches the mode."""

    @property
    def conversation_id(self) -> str | None: ...

    async def run_turn(self, text: str) -> TurnResult:
        """Send `text` as the user's message and wait for its run to end."""

    async def finish_running(self) -> TurnResult | None:
        """Wait for a run that was already going when the session connected, if any."""

    async def review_plan(self, plan: str) -> PlanDecision: ...

    def set_mode(self, mode: Mode | None) -> None:
        """Switch the policy's mode; None puts back the configured one."""

    def say(self, line: str) -> None:
        """Tell the developer how the ticket is going (one line)."""


@dataclass
class TestRun:
    command: str
    status: Literal["passed", "failed", "not run"]
    detail: str | None = None


@dataclass
class TicketActivity:
    """What happened to the client tools during the ticket: for the summary."""

    approvals_asked: int = 0
    approvals_given: int = 0
    tests: list[TestRun] = field(default_factory=list)

    def approval_answered(self, given: bool) -> None:
        self.approvals_asked += 1
        self.approvals_given += given

    def tool_handled(self, prepared: PreparedCall, verdict: Verdict, outcome: ToolOutcome) -> None:
        args = prepared.args
        if isinstance(args, ShellArgs) and TEST_COMMAND.search(args.command):
            status: Literal["passed", "failed", "not run"] = {
                "ok": "passed",
                "error": "failed",
                "denied": "not run",
            }[outcome.status]  # type: ignore[assignment]
            self.tests.append(TestRun(args.command, status, outcome.reason))


Outcome = Literal["patch", "no_changes", "stopped", "rejected", "failed"]


@dataclass
class TicketResult:
    """The end of a ticket, printed as a summary or as JSON; `exit_code` for scripts."""

    state: TicketState
    outcome: Outcome
    message: str
    files_changed: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    activity: TicketActivity = field(default_factory=TicketActivity)
    patch_file: str | None = None
    pr_url: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome == "patch" and not self.problems else 1

    def to_json(self) -> dict[str, Any]:
        ticket = self.state.ticket
        return {
            "outcome": self.outcome,
            "message": self.message,
            "ticket": {"key": ticket.key, "title": ticket.title, "url": ticket.url},
            "branch": self.state.branch,
            "workdir": self.state.workdir,
            "commit": self.state.commit,
            "files_changed": self.files_changed,
            "tests": [t.__dict__ for t in self.activity.tests],
            "approvals": {
                "asked": self.activity.approvals_asked,
                "given": self.activity.approvals_given,
            },
            "usage": self.usage.model_dump(),
            "runs": self.state.run_ids,
            "conversation_id": self.state.conversation_id,
            "patch_file": self.patch_file,
            "pr_url": self.pr_url,
            "problems": self.problems,
        }

    def summary_lines(self) -> list[str]:
        ticket, activity, usage = self.state.ticket, self.activity, self.usage
        lines = [f"Ticket {ticket.key}: {ticket.title}", f"  {self.message}"]
        lines.append(f"  branch {self.state.branch} in {self.state.workdir}")
        if self.state.commit:
            lines.append(f"  commit {self.state.commit[:12]}")
        if self.files_changed:
            lines.append(f"  files changed ({len(self.files_changed)}):")
            lines += [f"    {path}" for path in self.files_changed]
        tests = ", ".join(f"{t.command} → {t.status}" for t in activity.tests) or "none run"
        lines.append(f"  tests: {tests}")
        lines.append(
            f"  approvals: {activity.approvals_asked} asked, {activity.approvals_given} given"
        )
        lines.append(
            f"  tokens: {usage.input_tokens:,} in ({usage.cached_input_tokens:,} cached), "
            f"{usage.output_tokens:,} out; cost ${usage.cost_usd:.4f}"
        )
        if self.state.run_ids:
            runs = ", ".join(self.state.run_ids)
            lines.append(f"  runs: {runs} (approvals: cairn runs show RUN)")
        if self.patch_file:
            lines.append(f"  patch written to {self.patch_file}")
        if self.pr_url:
            lines.append(f"  pull request: {self.pr_url}")
        lines += [f"  problem: {problem}" for problem in self.problems]
        return lines


@dataclass(frozen=True)
class FinishOptions:
    patch_out: Path | None = None
    pull_request: bool = False
    env: dict[str, str] | None = None


def _completed(turn: TurnResult) -> bool:
    return turn.stop_reason == "end_turn" and bool(turn.answer.strip())


class TicketFlow:
    """Runs one ticket from wherever its state says it stands."""

    def __init__(
        self,
        state: TicketState,
        branch: git.TicketBranch,
        driver: TicketDriver,
        activity: TicketActivity,
        options: FinishOptions,
        save: Callable[[TicketState], object] | None = None,
    ) -> None:
        self.state = state
        self.branch = branch
        self.driver = driver
        self.activity = activity
        self.options = options
        self.usage = Usage()
        self._save = save or (lambda s: save_state(branch.repo_root, s))

    async def run(self) -> TicketResult:
        self.state.conversation_id = self.driver.conversation_id
        self._save(self.state)
        phase_at_start = self.state.phase
        leftover = await self.driver.finish_running()  # a run still going after a restart
        if leftover is not None:
            self._count(leftover)
        if self.state.phase == "plan":
            if leftover is not None and _completed(leftover):
                self._propose(leftover.answer)
            decided = await self._plan(resuming=bool(self.state.run_ids))
            if decided is not None:
                return decided
        if self.state.phase == "implement":
            if phase_at_start == "implement" and leftover is not None and _completed(leftover):
                turn = leftover  # the implementation finished while no client was there
            else:
                turn = await self._implement()
            if turn.stop_reason != "end_turn":
                return self._stopped(turn, "the agent stopped before finishing")
        return self._finish()

    def _stopped(self, turn: TurnResult, what: str) -> TicketResult:
        detail = f": {turn.detail}" if turn.detail else ""
        why = turn.stop_reason if turn.stop_reason != "end_turn" else "no answer"
        return self._result(
            "stopped", f"{what} ({why}{detail}); continue with cairn ticket --resume"
        )

    # ------------------------------------------------------------------ phases

    async def _plan(self, resuming: bool) -> TicketResult | None:
        """Propose, review and revise until the developer approves (None) or stops."""
        self.driver.set_mode("plan")
        try:
            if self.state.proposed_plan is None:
                first = REPLAN_PROMPT if resuming else self._plan_prompt()
                turn = await self._plan_turn(first)
                if not _completed(turn):
                    return self._stopped(turn, "the agent did not propose a plan")
            for _ in range(MAX_PLAN_ROUNDS):
                plan = self.state.proposed_plan or ""
                decision = await self.driver.review_plan(plan)
                if decision.kind == "stop":
                    return self._result("rejected", "the plan was rejected; nothing was changed")
                if decision.kind == "approve":
                    self.state.plan = decision.text.strip() or plan
                    self.state.proposed_plan, self.state.phase = None, "implement"
                    self._save(self.state)
                    return None
                turn = await self._plan_turn(REVISE_PROMPT.format(feedback=decision.text))
                if not _completed(turn):
                    return self._stopped(turn, "the agent did not revise the plan")
            return self._result("rejected", f"no plan was approved in {MAX_PLAN_ROUNDS} rounds")
        finally:
            self.driver.set_mode(None)

    def _plan_prompt(self) -> str:
        return PLAN_PROMPT.format(branch=self.state.branch, ticket=self.state.ticket.as_prompt())

    async def _plan_turn(self, prompt: str) -> TurnResult:
        turn = await self._turn(prompt)
        if _completed(turn):
            self._propose(turn.answer)
        return turn

    def _propose(self, plan: str) -> None:
        self.state.proposed_plan = plan
        self._save(self.state)

    async def _implement(self) -> TurnResult:
        if self.state.implement_started:
            prompt = CONTINUE_PROMPT
        else:
            prompt = IMPLEMENT_PROMPT.format(plan=self.state.plan)
        self.state.implement_started = True
        self._save(self.state)
        return await self._turn(prompt)

    async def _turn(self, prompt: str) -> TurnResult:
        turn = await self.driver.run_turn(prompt)
        self._count(turn)
        return turn

    def _count(self, turn: TurnResult) -> None:
        self.usage = self.usage + turn.usage
        if turn.run_id and turn.run_id not in self.state.run_ids:
            self.state.run_ids.append(turn.run_id)
        self._save(self.state)

    # ------------------------------------------------------------------ finishing

    def _finish(self) -> TicketResult:
        files = git.changed_files(self.branch)
        if not files:
            self.state.phase = "done"
            return self._result("no_changes", "the agent changed no files, so there is no patch")
        self.state.commit = git.commit_all(self.branch, self._commit_message())
        self.state.phase = "done"
        result = self._result("patch", f"committed on {self.state.branch}", files)
        if self.options.patch_out is not None:
            try:
                git.export_patch(self.branch, self.options.patch_out)
                result.patch_file = str(self.options.patch_out)
            except git.GitError as exc:
                result.problems.append(f"the patch file was not written: {exc}")
        if self.options.pull_request:
            self._open_pull_request(result)
        return result

    def _commit_message(self) -> str:
        ticket = self.state.ticket
        reference = f"Ticket: {ticket.key}" + (f" ({ticket.url})" if ticket.url else "")
        subject = ticket.title if len(ticket.title) <= 72 else ticket.title[:71] + "…"
        return f"{subject}\n\n{reference}\n\nPlan:\n{self.state.plan or ''}".rstrip() + "\n"

    def _open_pull_request(self, result: TicketResult) -> None:
        ticket = self.state.ticket
        origin = git.origin_url(self.branch.repo_root) or ""
        repo = ticket.github_repo or parse_github_remote(origin)
        if repo is None:
            result.problems.append("no pull request: origin is not a GitHub repository")
            return
        closes = f"\n\nCloses {ticket.key}" if ticket.github_repo == repo else ""
        body = "\n".join(result.summary_lines()) + f"\n\n## Plan\n\n{self.state.plan}{closes}"
        env = os.environ if self.options.env is None else self.options.env
        # On GitHub Enterprise: the API of the ticket's site, else of the origin's host.
        site = ticket.url if ticket.github_repo else normalise_origin(origin).partition("/")[0]
        try:
            git.push_branch(self.branch)
            result.pr_url = create_pull_request(
                repo,
                head=self.state.branch,
                base=self.state.base_branch,
                title=ticket.title,
                body=body,
                env=env,
                api_url=github_api_url(env, site),
            )
        except (git.GitError, TicketError) as exc:
            result.problems.append(f"no pull request: {exc}")

    def _result(
        self, outcome: Outcome, message: str, files: list[str] | None = None
    ) -> TicketResult:
        self._save(self.state)
        return TicketResult(
            state=self.state,
            outcome=outcome,
            message=message,
            files_changed=files or [],
            usage=self.usage,
            activity=self.activity,
        )

"""The phases of a ticket: plan read-only, review the plan, implement, then commit and report.

Owns what the agent is asked at each phase, what goes into the commit, and the result of the
whole ticket; a front end (headless or the TUI) supplies turns and reviews (`TicketDriver`) and
where the git and GitHub steps run (`RunBlocking`: off the event loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from cairn_protocol import normalise_origin
from cairn_protocol.messages import Usage

from cairn_client.config import TicketSettings
from cairn_client.errors import ExitCode, exit_code_for_stop
from cairn_client.listener import RunFollower, RunRefused
from cairn_client.policy.types import Mode
from cairn_client.secrets import is_secret_name
from cairn_client.ticket import git
from cairn_client.ticket.github import (
    create_pull_request,
    github_api_url,
    parse_github_remote,
)
from cairn_client.ticket.sources import TicketError
from cairn_client.ticket.state import TicketState, save_state

T = TypeVar("T")

MAX_PLAN_ROUNDS = 5
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
You were interrupted while implementing the approved plan below. The working tree holds your \
changes so far: check what is done, finish the rest, run the tests, and end with a short \
summary.

Approved plan:

{plan}"""


@dataclass(frozen=True)
class TurnResult:
    """How one run of the agent ended, with its last answer. `stop_reason` is the server's,
    or "not_sent" / "refused" when the message never started a run."""

    run_id: str | None
    stop_reason: str
    answer: str
    usage: Usage = field(default_factory=Usage)
    detail: str | None = None

    @classmethod
    def of(cls, run: RunFollower) -> TurnResult:
        """How the followed run ended (its `finished` is done), or why none started."""
        try:
            finished = run.finished.result()
        except RunRefused as exc:
            return cls(None, "refused", "", detail=str(exc))
        return cls(
            finished.run_id, finished.stop_reason, run.last_answer, finished.usage, finished.detail
        )


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


class RunBlocking(Protocol):
    """Runs a blocking step (commit, push, pull request) off the event loop."""

    def __call__(self, step: Callable[[], T], /) -> Awaitable[T]: ...


async def in_a_thread(step: Callable[[], T]) -> T:
    return await asyncio.to_thread(step)


Outcome = Literal["patch", "no_changes", "stopped", "rejected", "failed"]


@dataclass
class TicketResult:
    """The end of a ticket, printed as a summary or as JSON; `exit_code` for scripts."""

    state: TicketState
    outcome: Outcome
    message: str
    files_changed: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # changed, but not the ticket's
    patch_file: str | None = None
    problems: list[str] = field(default_factory=list)
    stop_reason: str | None = None  # the run's, when a run stopped the ticket

    @property
    def exit_code(self) -> int:
        """0 a patch, 3 the model failed, 1 any other end without a patch (errors.ExitCode)."""
        if self.outcome == "patch" and not self.problems:
            return ExitCode.OK
        if self.stop_reason is not None:
            return max(exit_code_for_stop(self.stop_reason), ExitCode.FAILED)
        return ExitCode.FAILED

    def to_json(self) -> dict[str, Any]:
        ticket, activity = self.state.ticket, self.state.activity
        return {
            "outcome": self.outcome,
            "message": self.message,
            "ticket": {"key": ticket.key, "title": ticket.title, "url": ticket.url},
            "branch": self.state.branch,
            "workdir": self.state.workdir,
            "commit": self.state.commit,
            "files_changed": self.files_changed,
            "left_uncommitted": self.left_out,
            "tests": [test.__dict__ for test in activity.tests],
            "approvals": {"asked": activity.approvals_asked, "given": activity.approvals_given},
            "usage": activity.usage.model_dump(),
            "runs": self.state.run_ids,
            "conversation_id": self.state.conversation_id,
            "patch_file": self.patch_file,
            "pr_url": self.state.pr_url,
            "problems": self.problems,
        }

    def summary_lines(self, *, local: bool = True) -> list[str]:
        """The summary; without `local`, nothing about this machine (for a pull request)."""
        ticket, activity, usage = self.state.ticket, self.state.activity, self.state.activity.usage
        lines = [f"Ticket {ticket.key}: {ticket.title}", f"  {self.message}"]
        if local:
            lines.append(f"  branch {self.state.branch} in {self.state.workdir}")
        if self.state.commit:
            lines.append(f"  commit {self.state.commit[:12]}")
        if self.files_changed:
            lines.append(f"  files changed ({len(self.files_changed)}):")
            lines += [f"    {path}" for path in self.files_changed]
        if self.left_out and local:
            lines.append(f"  left uncommitted (not the ticket's): {', '.join(self.left_out)}")
        tests = ", ".join(f"{t.command} → {t.status}" for t in activity.tests) or "none run"
        lines.append(f"  tests: {tests}")
        lines.append(
            f"  approvals: {activity.approvals_asked} asked, {activity.approvals_given} given"
        )
        lines.append(
            f"  tokens: {usage.input_tokens:,} in ({usage.cached_input_tokens:,} cached), "
            f"{usage.output_tokens:,} out; cost ${usage.cost_usd:.4f}"
        )
        if self.state.run_ids and local:
            runs = ", ".join(self.state.run_ids)
            lines.append(f"  runs: {runs} (approvals: cairn runs show RUN)")
        if self.patch_file and local:
            lines.append(f"  patch written to {self.patch_file}")
        if self.state.pr_url:
            lines.append(f"  pull request: {self.state.pr_url}")
        lines += [f"  problem: {problem}" for problem in self.problems]
        return lines


@dataclass(frozen=True)
class FinishOptions:
    patch_out: Path | None = None
    pull_request: bool = False
    tickets: TicketSettings = field(default_factory=TicketSettings)  # the GitHub token


def _completed(turn: TurnResult) -> bool:
    return turn.stop_reason == "end_turn" and bool(turn.answer.strip())


class TicketFlow:
    """Runs one ticket from wherever its state says it stands."""

    def __init__(
        self,
        state: TicketState,
        branch: git.TicketBranch,
        driver: TicketDriver,
        options: FinishOptions,
        save: Callable[[TicketState], object] | None = None,
        run_blocking: RunBlocking = in_a_thread,
    ) -> None:
        self.state = state
        self.branch = branch
        self.driver = driver
        self.options = options
        self._run_blocking = run_blocking
        self._save = save or (lambda s: save_state(branch.repo_root, s, environ=branch.environ))

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
            ended = await self._plan(resuming=bool(self.state.run_ids))
            if ended is not None:
                return ended
        if self.state.phase == "implement":
            if phase_at_start == "implement" and leftover is not None and _completed(leftover):
                turn = leftover  # the implementation finished while no client was there
            else:
                turn = await self._implement()
            if turn.stop_reason != "end_turn":
                return self._stopped(turn, "the agent stopped before finishing")
            self.state.phase = "finish"
            self._save(self.state)
        return await self._run_blocking(self._finish)

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
            for round_number in range(1, MAX_PLAN_ROUNDS + 1):
                plan = self.state.proposed_plan or ""
                decision = await self.driver.review_plan(plan)
                if decision.kind == "approve":
                    self.state.plan = decision.text.strip() or plan
                    self.state.proposed_plan, self.state.phase = None, "implement"
                    self._save(self.state)
                    return None
                if decision.kind == "stop" or round_number == MAX_PLAN_ROUNDS:
                    break
                turn = await self._plan_turn(REVISE_PROMPT.format(feedback=decision.text))
                if not _completed(turn):
                    return self._stopped(turn, "the agent did not revise the plan")
            rejected = "the plan was not approved; nothing was changed"
            return await self._run_blocking(lambda: self._abandon("rejected", rejected))
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
        template = CONTINUE_PROMPT if self.state.implement_started else IMPLEMENT_PROMPT
        self.state.implement_started = True
        self._save(self.state)
        return await self._turn(template.format(plan=self.state.plan))

    async def _turn(self, prompt: str) -> TurnResult:
        turn = await self.driver.run_turn(prompt)
        self._count(turn)
        return turn

    def _count(self, turn: TurnResult) -> None:
        self.state.activity.usage = self.state.activity.usage + turn.usage
        if turn.run_id and turn.run_id not in self.state.run_ids:
            self.state.run_ids.append(turn.run_id)
        self._save(self.state)

    # ------------------------------------------------------------------ finishing

    def _finish(self) -> TicketResult:
        """Commit the ticket's files (once), then the patch file and pull request asked for."""
        try:
            files, left_out = self._ticket_files()
            if self.state.commit is None:
                if not files:
                    return self._abandon(
                        "no_changes", "the agent changed no files, so there is no patch"
                    )
                self.state.commit = git.commit_paths(self.branch, files, self._commit_message())
        except git.GitError as exc:
            self._save(self.state)
            return self._result(
                "failed", f"the commit failed: {exc}; fix it and run cairn ticket --resume"
            )
        self.state.phase = "finish"  # committed; done once the patch file and PR are too
        result = self._result("patch", f"committed on {self.state.branch}", files, left_out)
        if self.options.patch_out is not None:
            try:
                git.export_patch(self.branch, self.options.patch_out)
                result.patch_file = str(self.options.patch_out)
            except git.GitError as exc:
                result.problems.append(f"the patch file was not written: {exc}")
        if self.options.pull_request and self.state.pr_url is None:
            self._open_pull_request(result)
        if not result.problems:
            self.state.phase = "done"
        self._save(self.state)
        return result

    def _ticket_files(self) -> tuple[list[str], list[str]]:
        """The changed files that are the ticket's, and the others: what the agent wrote with
        its edit tools, and tracked files changed since the start (say by a formatter it
        ran). New files from commands (logs, caches) and whatever was dirty before the
        ticket began stay out, and so does any secret-looking file."""
        tracked = git.tracked_files(self.branch, self.state.base_commit)
        written = set(self.state.activity.files_written)
        mine: list[str] = []
        others: list[str] = []
        for path in git.changed_files(self.branch):
            by_agent = path in written or (path in tracked and path not in self.state.preexisting)
            (mine if by_agent and not is_secret_name(path) else others).append(path)
        return mine, others

    def _commit_message(self) -> str:
        ticket = self.state.ticket
        reference = f"Ticket: {ticket.key}" + (f" ({ticket.url})" if ticket.url else "")
        subject = ticket.title if len(ticket.title) <= 72 else ticket.title[:71] + "…"
        return f"{subject}\n\n{reference}\n\nPlan:\n{self.state.plan or ''}".rstrip() + "\n"

    def _open_pull_request(self, result: TicketResult) -> None:
        ticket = self.state.ticket
        origin = git.origin_url(self.branch.repo_root, environ=self.branch.environ) or ""
        repo = parse_github_remote(origin) or ticket.github_repo  # where the branch is pushed
        if repo is None:
            result.problems.append("no pull request: origin is not a GitHub repository")
            return
        closes = f"\n\nCloses {ticket.key}" if ticket.github_repo else ""
        summary = "\n".join(result.summary_lines(local=False))
        settings = self.options.tickets
        # On GitHub Enterprise: the API of the origin's host, else of the ticket's site.
        site = normalise_origin(origin).partition("/")[0] if origin else ticket.url
        try:
            git.push_branch(self.branch)
            self.state.pr_url = create_pull_request(
                repo,
                head=self.state.branch,
                base=self.state.base_branch,
                title=ticket.title,
                body=f"{summary}\n\n## Plan\n\n{self.state.plan}{closes}",
                settings=settings,
                api_url=github_api_url(settings, site),
            )
        except (git.GitError, TicketError) as exc:
            result.problems.append(f"no pull request: {exc}; retry with cairn ticket --resume")

    def _abandon(self, outcome: Outcome, message: str) -> TicketResult:
        """End a ticket that produced nothing: its branch (or worktree) and state go away."""
        result = self._result(outcome, message)
        try:
            git.discard_branch(self.branch)
        except git.GitError as exc:
            result.problems.append(f"the branch {self.state.branch} was kept: {exc}")
        self.state.phase = "done"
        return result

    def _stopped(self, turn: TurnResult, what: str) -> TicketResult:
        detail = f": {turn.detail}" if turn.detail else ""
        why = turn.stop_reason if turn.stop_reason != "end_turn" else "no answer"
        result = self._result(
            "stopped", f"{what} ({why}{detail}); continue with cairn ticket --resume"
        )
        result.stop_reason = turn.stop_reason
        return result

    def _result(
        self,
        outcome: Outcome,
        message: str,
        files: list[str] | None = None,
        left_out: list[str] | None = None,
    ) -> TicketResult:
        self._save(self.state)
        return TicketResult(self.state, outcome, message, files or [], left_out or [])

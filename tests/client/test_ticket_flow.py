"""The ticket's phases on a real git branch, driven by a scripted front end: resumes, plan
rounds, runs that stop early, and what the agent is told at each step."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest
from cairn_client.policy.types import Mode
from cairn_client.ticket import git
from cairn_client.ticket.command import TicketRequest, start_ticket
from cairn_client.ticket.flow import (
    CONTINUE_PROMPT,
    MAX_PLAN_ROUNDS,
    REPLAN_PROMPT,
    FinishOptions,
    PlanDecision,
    TicketFlow,
    TurnResult,
)
from cairn_client.ticket.state import TicketState, load_state
from support.repos import run_git
from support.settings import environment


class ScriptedDriver:
    """A TicketDriver whose runs and plan reviews come from lists; it records what it got."""

    def __init__(
        self,
        turns: list[TurnResult],
        decisions: list[PlanDecision] | None = None,
        running: TurnResult | None = None,
        on_turn: dict[int, Path] | None = None,
    ) -> None:
        self.turns = deque(turns)
        self.decisions = deque(decisions or [])
        self.running = running
        self.sent: list[str] = []
        self.reviewed: list[str] = []
        self.modes: list[Mode | None] = []
        self.on_turn = on_turn or {}  # turn number -> a file the "agent" writes then

    @property
    def conversation_id(self) -> str | None:
        return "conv-1"

    async def run_turn(self, text: str) -> TurnResult:
        self.sent.append(text)
        if len(self.sent) in self.on_turn:
            self.on_turn[len(self.sent)].write_text("changed by the agent\n")
        return self.turns.popleft()

    async def finish_running(self) -> TurnResult | None:
        return self.running

    async def review_plan(self, plan: str) -> PlanDecision:
        self.reviewed.append(plan)
        return self.decisions.popleft()

    def set_mode(self, mode: Mode | None) -> None:
        self.modes.append(mode)

    def say(self, line: str) -> None:
        pass


def answer(text: str, stop: str = "end_turn", run: str = "run") -> TurnResult:
    return TurnResult(run_id=run, stop_reason=stop, answer=text)


@pytest.fixture
def started(repo: Path, tmp_path: Path) -> tuple[TicketState, git.TicketBranch]:
    (tmp_path / "t.md").write_text("# Fix total\n\nIt returns 1.\n")
    begun = start_ticket(repo, TicketRequest(source=str(tmp_path / "t.md")), environ=environment())
    return begun.state, begun.branch


def flow(started: tuple[TicketState, git.TicketBranch], driver: ScriptedDriver) -> TicketFlow:
    state, branch = started
    return TicketFlow(state, branch, driver, FinishOptions())


async def test_a_resumed_plan_waiting_for_review_is_shown_again_without_asking_anew(
    started: tuple[TicketState, git.TicketBranch], repo: Path
) -> None:
    state, branch = started
    state.proposed_plan = "Plan: fix total."
    app = repo / "src" / "app.py"
    driver = ScriptedDriver(
        [answer("Done.", run="run-2")], [PlanDecision("approve", "")], on_turn={1: app}
    )

    result = await flow(started, driver).run()

    assert driver.reviewed == ["Plan: fix total."]
    assert len(driver.sent) == 1 and "Plan: fix total." in driver.sent[0]  # straight to work
    assert driver.modes == ["plan", None]  # plan mode only while planning
    assert result.outcome == "patch" and result.files_changed == ["src/app.py"]
    assert load_state(repo, "fix-total", environ=environment()).phase == "done"
    assert git.changed_files(branch) == ["src/app.py"]


async def test_feedback_rounds_end_after_the_limit(
    started: tuple[TicketState, git.TicketBranch],
) -> None:
    rounds = MAX_PLAN_ROUNDS
    driver = ScriptedDriver(
        [answer(f"Plan {n}") for n in range(rounds + 1)],
        [PlanDecision("reject", f"no {n}") for n in range(rounds)],
    )

    result = await flow(started, driver).run()

    assert result.outcome == "rejected" and result.exit_code == 1
    assert len(driver.reviewed) == rounds
    assert "no 0" in driver.sent[1]  # the feedback is what the agent revises from


async def test_a_run_that_stops_early_keeps_the_ticket_resumable(
    started: tuple[TicketState, git.TicketBranch], repo: Path
) -> None:
    driver = ScriptedDriver(
        [answer("Plan: fix.", run="run-1"), answer("", stop="step_limit", run="run-2")],
        [PlanDecision("approve")],
    )

    result = await flow(started, driver).run()

    assert result.outcome == "stopped" and "step_limit" in result.message
    assert "cairn ticket --resume" in result.message
    saved = load_state(repo, environ=environment())
    assert saved.phase == "implement" and saved.implement_started
    assert saved.plan == "Plan: fix." and saved.run_ids == ["run-1", "run-2"]

    # The resume tells the agent it was interrupted instead of repeating the whole plan.
    again = ScriptedDriver([answer("Done.", run="run-3")], on_turn={1: repo / "src" / "app.py"})
    resumed = await flow((saved, started[1]), again).run()
    assert again.sent == [CONTINUE_PROMPT.format(plan="Plan: fix.")]
    assert resumed.outcome == "patch"


async def test_a_run_still_going_at_resume_is_waited_for_not_repeated(
    started: tuple[TicketState, git.TicketBranch], repo: Path
) -> None:
    state, _ = started
    state.phase, state.plan, state.implement_started = "implement", "Plan.", True
    (repo / "src" / "app.py").write_text("changed while nobody watched\n")
    driver = ScriptedDriver([], running=answer("Done.", run="run-9"))

    result = await flow(started, driver).run()

    assert driver.sent == []
    assert result.outcome == "patch" and "run-9" in result.state.run_ids


async def test_a_plan_that_fails_says_why_and_asks_again_on_resume(
    started: tuple[TicketState, git.TicketBranch], repo: Path
) -> None:
    driver = ScriptedDriver([TurnResult("run-1", "model_error", "", detail="429 from the API")])

    result = await flow(started, driver).run()

    assert result.outcome == "stopped"
    assert "did not propose a plan (model_error: 429 from the API)" in result.message
    again = ScriptedDriver([answer("Plan."), answer("Done.")], [PlanDecision("stop")])
    await flow((load_state(repo, environ=environment()), started[1]), again).run()
    assert again.sent == [REPLAN_PROMPT]


async def test_the_commit_holds_the_tickets_files_only(
    started: tuple[TicketState, git.TicketBranch], repo: Path
) -> None:
    state, branch = started
    state.preexisting = ["notes.txt"]  # dirty before the ticket began (--allow-dirty)
    (repo / "notes.txt").write_text("the developer's own notes\n")

    class Agent(ScriptedDriver):
        async def run_turn(self, text: str) -> TurnResult:
            if text.startswith("The plan below is approved"):
                (repo / "src" / "app.py").write_text("fixed\n")  # tracked: the agent's
                (repo / "src" / "new.py").write_text("new\n")  # written with its edit tools
                (repo / "build.out").write_text("from a test run\n")  # junk from a command
                (repo / ".env.local").write_text("TOKEN=x\n")  # secret-looking, even if written
                state.activity.files_written += ["src/new.py", ".env.local"]
            return await super().run_turn(text)

    driver = Agent([answer("Plan."), answer("Done.")], [PlanDecision("approve")])

    result = await flow(started, driver).run()

    assert result.outcome == "patch"
    assert result.files_changed == ["src/app.py", "src/new.py"]
    assert sorted(result.left_out) == [".env.local", "build.out", "notes.txt"]
    committed = run_git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert committed == ["src/app.py", "src/new.py"]
    assert (repo / "build.out").exists() and (repo / "notes.txt").exists()  # kept, uncommitted
    assert "left uncommitted" in "\n".join(result.summary_lines())


async def test_a_finished_ticket_resumed_keeps_its_commit(
    started: tuple[TicketState, git.TicketBranch], repo: Path
) -> None:
    driver = ScriptedDriver(
        [answer("Plan."), answer("Done.")], [PlanDecision("approve")], on_turn={2: repo / "f.txt"}
    )
    state, _ = started
    state.activity.files_written.append("f.txt")
    first = await flow(started, driver).run()
    assert first.outcome == "patch" and first.state.commit

    again = await flow(
        (load_state(repo, "fix-total", environ=environment()), started[1]), ScriptedDriver([])
    ).run()

    assert again.outcome == "patch" and again.state.commit == first.state.commit
    assert run_git(repo, "rev-list", "--count", "main..cairn/fix-total") == "1"

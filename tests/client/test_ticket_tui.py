"""`cairn ticket` in the real app under Pilot: the plan is reviewed (rejected with feedback,
edited, approved), the edit is approved on the usual screen, and one commit lands."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from cairn_client.call_log import CallLog
from cairn_client.policy.settings import PolicySettings
from cairn_client.ticket import git
from cairn_client.ticket.command import Started, TicketRequest, start_ticket
from cairn_client.ticket.flow import FinishOptions
from cairn_client.tui.app import CairnApp
from cairn_client.tui.screens.approval import ApprovalScreen
from cairn_client.tui.screens.plan import PlanScreen
from cairn_client.tui.ticket import TuiTicketDriver
from cairn_fakes.runner import FakeModelServer
from cairn_server.api.background import BackgroundServer
from support.repos import run_git
from support.servers import call, script
from support.sessions import sessions_for
from support.settings import environment, policy_for
from support.tui import chat_entries
from support.waiting import until
from textual.widgets import Input, TextArea

EDIT = call("edit", path="src/app.py", old_string="return 1", new_string="return sum(items)")


def ticket_app(
    server: BackgroundServer, repo: Path, tmp_path: Path
) -> tuple[CairnApp, TuiTicketDriver, Started]:
    (tmp_path / "ticket.md").write_text("# Fix total\n\ntotal() must add the items.\n")
    started = start_ticket(
        repo, TicketRequest(source=str(tmp_path / "ticket.md")), environ=environment()
    )
    driver = TuiTicketDriver(started, FinishOptions(), "default")

    start = sessions_for(
        server.url,
        started.branch.workdir,
        policy_for(PolicySettings(mode="default")),
        conversation="new",
        call_log=CallLog(tmp_path / "calls.sqlite3", repo),
    )
    return CairnApp(start, workspace_name="repo", companion=driver), driver, started


def on_top(app: CairnApp, kind: type) -> bool:
    return isinstance(app.screen, kind)


async def test_the_plan_is_revised_edited_and_approved_then_the_edit_is_asked_and_committed(
    server: BackgroundServer, fake_model: FakeModelServer, repo: Path, tmp_path: Path
) -> None:
    fake_model.set_script(
        script(
            {"text": "Plan A: rewrite everything."},
            {"text": "Plan B: make total() return sum(items)."},
            {"tool_calls": [EDIT]},
            {"text": "Done: total() adds up."},
        )
    )
    app, driver, started = ticket_app(server, repo, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: on_top(app, PlanScreen))
        assert "Plan A" in app.screen.plan  # type: ignore[attr-defined]
        await pilot.press("n")
        app.screen.query_one("#plan-feedback", Input).value = "smaller, please"
        await pilot.press("enter")

        await until(pilot, lambda: on_top(app, PlanScreen) and "Plan B" in app.screen.plan)  # type: ignore[attr-defined]
        await pilot.press("e")
        app.screen.query_one("#plan-editor", TextArea).text = "Plan B, and keep main() as is."
        await pilot.press("ctrl+s")

        await until(pilot, lambda: on_top(app, ApprovalScreen))
        await pilot.press("y")
        await until(pilot, lambda: driver.result is not None)
        await until(
            pilot, lambda: any("committed on cairn/fix-total" in e for e in chat_entries(app))
        )

    assert driver.result is not None and driver.result.outcome == "patch"
    assert driver.result.state.activity.approvals_asked == 1
    assert driver.result.state.activity.approvals_given == 1
    assert "return sum(items)" in (started.branch.workdir / "src/app.py").read_text()
    assert run_git(repo, "rev-list", "--count", "main..cairn/fix-total") == "1"
    bodies = json.dumps([r.body for r in fake_model.requests])
    assert "smaller, please" in bodies  # the feedback reached the agent
    assert "keep main() as is" in bodies  # the edited plan is the one implemented
    # The plan was made in plan mode, the implementation in the configured mode.
    assert app.status.mode in (None, "default")


async def test_stopping_at_the_plan_changes_nothing(
    server: BackgroundServer, fake_model: FakeModelServer, repo: Path, tmp_path: Path
) -> None:
    fake_model.set_script(script({"text": "Plan: rewrite everything."}))
    app, driver, started = ticket_app(server, repo, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: on_top(app, PlanScreen))
        await pilot.press("escape")
        await until(pilot, lambda: driver.result is not None)

    assert driver.result is not None and driver.result.outcome == "rejected"
    assert driver.result.exit_code == 1
    # Nothing is left of the ticket: its branch is gone and the checkout is back on main.
    assert run_git(repo, "branch", "--list", "cairn/*") == ""
    assert run_git(repo, "branch", "--show-current") == "main"


async def test_a_commit_that_blocks_runs_in_a_thread_and_the_app_keeps_answering(
    server: BackgroundServer,
    fake_model: FakeModelServer,
    repo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The flow's git and GitHub steps (commit, patch file, push, pull request) run in a
    thread worker: while one hangs, the prompt still takes keys and commands answer."""
    fake_model.set_script(
        script({"text": "Plan: sum the items."}, {"tool_calls": [EDIT]}, {"text": "Done."})
    )
    entered, release = threading.Event(), threading.Event()
    real_commit = git.commit_paths

    def slow_commit(*args: Any, **kwargs: Any) -> str | None:
        entered.set()
        assert release.wait(30), "the test never released the commit"
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(git, "commit_paths", slow_commit)
    app, driver, _started = ticket_app(server, repo, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: on_top(app, PlanScreen))
        await pilot.press("y")
        await until(pilot, lambda: on_top(app, ApprovalScreen))
        await pilot.press("y")
        await until(pilot, entered.is_set)

        await pilot.press(*"still here")
        assert app.query_one("#prompt", Input).value == "still here"
        app.query_one("#prompt", Input).value = "/mode"
        await pilot.press("enter")
        await until(pilot, lambda: any("Permission mode:" in e for e in chat_entries(app)))
        assert driver.result is None  # the commit is still hanging

        release.set()
        await until(pilot, lambda: driver.result is not None)

    assert driver.result is not None and driver.result.outcome == "patch"
    assert run_git(repo, "rev-list", "--count", "main..cairn/fix-total") == "1"

"""/undo: the last applied change comes back off disk, or a refusal says why it cannot.

Also the TUI side of refusals: /undo and /mode plan in the real app against a real server.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cairn_client.call_log import CallLog
from cairn_client.policy.settings import PolicySettings
from cairn_client.tools.base import FileChange
from cairn_client.tools.changes import apply_changes
from cairn_client.tui.app import CairnApp
from cairn_client.undo import UndoRefused, UndoStack
from cairn_fakes.runner import FakeModelServer
from cairn_server.api.background import BackgroundServer
from support.servers import call, script
from support.sessions import sessions_for
from support.settings import policy_for
from support.tui import chat_entries, status_text
from support.waiting import until
from textual.pilot import Pilot
from textual.widgets import Input

APP = "def total(items):\n    return 1\n\n\ndef main():\n    print(total([]))\n"


@pytest.fixture
def stack(repo: Path) -> UndoStack:
    return UndoStack(repo)


@pytest.fixture
def readme(repo: Path) -> str:
    """README.md as committed in `repo`."""
    return (repo / "README.md").read_text()


def applied(stack: UndoStack, call_id: str, *changes: FileChange) -> None:
    apply_changes(stack.root, changes)
    stack.record(call_id, "apply_patch", changes)


def test_undo_reverts_the_newest_change_first(repo: Path, stack: UndoStack) -> None:
    applied(stack, "c1", FileChange("src/app.py", APP, APP.replace("1", "2")))
    applied(stack, "c2", FileChange("src/app.py", APP.replace("1", "2"), "x\n"))

    assert stack.undo_last().call_id == "c2"
    assert (repo / "src/app.py").read_text() == APP.replace("1", "2")
    assert stack.undo_last().call_id == "c1"
    assert (repo / "src/app.py").read_text() == APP
    with pytest.raises(UndoRefused, match="no change from this session"):
        stack.undo_last()


def test_undo_removes_a_created_file_and_restores_a_deleted_one(
    repo: Path, stack: UndoStack, readme: str
) -> None:
    applied(
        stack,
        "c1",
        FileChange("notes/new.md", None, "new\n"),
        FileChange("README.md", readme, None),
    )

    undone = stack.undo_last()

    assert not (repo / "notes/new.md").exists()
    assert (repo / "README.md").read_text() == readme
    assert undone.describe() == (
        "removed notes/new.md (it was created); restored README.md (it was deleted)"
    )


def test_undo_refuses_when_a_file_changed_since_and_touches_nothing(
    repo: Path, stack: UndoStack, readme: str
) -> None:
    applied(
        stack,
        "c1",
        FileChange("src/app.py", APP, APP.replace("1", "2")),
        FileChange("README.md", readme, readme + "more\n"),
    )
    (repo / "README.md").write_text("edited by hand\n")

    with pytest.raises(UndoRefused, match="README.md changed since cairn wrote it"):
        stack.undo_last()

    assert (repo / "src/app.py").read_text() == APP.replace("1", "2")  # all or nothing
    assert (repo / "README.md").read_text() == "edited by hand\n"
    assert len(stack) == 1  # still the newest change


def test_the_stack_is_bounded(repo: Path) -> None:
    stack = UndoStack(repo, limit=2)
    for index in range(3):
        stack.record(f"c{index}", "write", (FileChange(f"f{index}", None, "x"),))

    assert len(stack) == 2


# --------------------------------------------------------------------------- in the TUI


@asynccontextmanager
async def accepting_edits(
    server: BackgroundServer, repo: Path, tmp_path: Path
) -> AsyncIterator[tuple[CairnApp, Pilot[Any]]]:
    """The app under Pilot, its session in accept-edits mode against `server`."""
    policy = policy_for(PolicySettings(mode="accept-edits"))
    call_log = CallLog(tmp_path / "calls.sqlite3", repo)
    app = CairnApp(sessions_for(server.url, repo, policy, call_log=call_log), workspace_name="repo")
    async with app.run_test(size=(120, 36)) as pilot:
        yield app, pilot


async def type_line(pilot: Pilot[Any], text: str) -> None:
    prompt = pilot.app.query_one("#prompt", Input)
    prompt.value = text
    await pilot.press("enter")


EDIT = call("edit", path="src/app.py", old_string="return 1", new_string="return 2")


async def agent_edits(pilot: Pilot[Any], app: CairnApp) -> None:
    """Ask for a fix and wait until the scripted EDIT ran and the model said Done."""
    await until(pilot, lambda: app.agent_id is not None)
    await type_line(pilot, "fix total")
    await until(pilot, lambda: any("Done." in e for e in chat_entries(app)))


async def test_slash_undo_reverts_the_edit_and_then_refuses(
    server: BackgroundServer, fake_model: FakeModelServer, repo: Path, tmp_path: Path
) -> None:
    fake_model.set_script(
        script({"text": "Editing.", "tool_calls": [EDIT]}, {"text": "Done."}, {"text": "Noted."})
    )
    async with accepting_edits(server, repo, tmp_path) as (app, pilot):
        await agent_edits(pilot, app)
        assert "return 2" in (repo / "src/app.py").read_text()

        await type_line(pilot, "/undo")
        await until(pilot, lambda: any("Undone" in e for e in chat_entries(app)))
        assert (repo / "src/app.py").read_text() == APP
        assert "Undone (edit): restored src/app.py." in chat_entries(app)

        await type_line(pilot, "/undo")
        await until(pilot, lambda: any("Nothing was undone" in e for e in chat_entries(app)))

        # The model hears of the undo with the next message, once.
        await type_line(pilot, "what now?")
        await until(pilot, lambda: any("Noted." in e for e in chat_entries(app)))
        told = json.dumps(fake_model.requests[-1].body["messages"][-2:])
        assert "The user ran /undo and reverted your edit call" in told
        assert "restored src/app.py" in told
        assert "what now?" in told
        earlier = json.dumps([r.body for r in fake_model.requests[:-1]])
        assert "ran /undo" not in earlier


async def test_undo_refuses_after_the_file_changed_by_hand(
    server: BackgroundServer, fake_model: FakeModelServer, repo: Path, tmp_path: Path
) -> None:
    fake_model.set_script(script({"text": "Editing.", "tool_calls": [EDIT]}, {"text": "Done."}))
    async with accepting_edits(server, repo, tmp_path) as (app, pilot):
        await agent_edits(pilot, app)
        (repo / "src/app.py").write_text("mine now\n")

        await type_line(pilot, "/undo")
        await until(pilot, lambda: any("Nothing was undone" in e for e in chat_entries(app)))
        refusal = next(e for e in chat_entries(app) if "Nothing was undone" in e)
        assert "src/app.py changed since cairn wrote it" in refusal
        assert (repo / "src/app.py").read_text() == "mine now\n"


async def test_plan_mode_refusal_is_shown_and_told_to_the_model(
    server: BackgroundServer, fake_model: FakeModelServer, repo: Path, tmp_path: Path
) -> None:
    fake_model.set_script(script({"text": "Editing.", "tool_calls": [EDIT]}, {"text": "Planned."}))
    async with accepting_edits(server, repo, tmp_path) as (app, pilot):
        await until(pilot, lambda: app.agent_id is not None)
        await type_line(pilot, "/mode plan")
        await until(pilot, lambda: any("now plan" in e for e in chat_entries(app)))
        assert "plan mode" in status_text(app)
        await type_line(pilot, "fix total")
        await until(pilot, lambda: any("Planned." in e for e in chat_entries(app)))

        assert any("plan mode is read-only" in e for e in chat_entries(app))
        assert (repo / "src/app.py").read_text() == APP
        assert "plan mode is read-only" in json.dumps(fake_model.requests[-1].body)

"""The transcript in the real TUI against a real server: a denied call, a killed command, a
call that never ran, the server's own calls and the calls it refused to send read the same live
and after cairn is started again, results included, and the status line keeps the
conversation's totals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cairn_client.tui.app import CairnApp
from cairn_client.tui.screens.approval import ApprovalScreen
from cairn_client.tui.widgets.chat import ToolEntry
from cairn_fakes.runner import FakeModelServer
from cairn_server.api.background import BackgroundServer
from support.servers import call, script
from support.sessions import sessions_for
from support.tui import chat_entries, tool_entries, tool_results
from support.waiting import until
from textual.pilot import Pilot
from textual.widgets import Input

SIZE = (120, 40)


@asynccontextmanager
async def running_app(url: str, repo: Path) -> AsyncIterator[tuple[CairnApp, Pilot[Any]]]:
    app = CairnApp(
        sessions_for(url, repo, conversation="reopen", interactive=True), workspace_name="repo"
    )
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.conversation_id is not None)
        yield app, pilot


async def send(app: CairnApp, pilot: Pilot[Any], text: str) -> None:
    app.query_one("#prompt", Input).value = text
    await pilot.press("enter")


def asking_about(app: CairnApp, path: str) -> bool:
    screen = app.screen
    return isinstance(screen, ApprovalScreen) and screen.prepared.request.arguments["path"] == path


def running(app: CairnApp) -> ToolEntry | None:
    return next((e for e in tool_entries(app) if e.state == "running"), None)


async def allow_if_asked(app: CairnApp, pilot: Pilot[Any]) -> None:
    """Allow the command once when the policy asks (it does when there is no sandbox)."""
    await until(pilot, lambda: isinstance(app.screen, ApprovalScreen) or running(app) is not None)
    if isinstance(app.screen, ApprovalScreen):
        await pilot.press("y")
    await until(pilot, lambda: running(app) is not None)


async def test_denied_killed_and_unrun_calls_read_the_same_after_a_restart(
    server: BackgroundServer, own_repo: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {
                "tool_calls": [
                    call("edit", path="src/util.py", old_string="tidy", new_string="tidy up")
                ]
            },
            {"tool_calls": [call("read", path="README.md")]},
            {
                "tool_calls": [
                    call("edit", path="src/app.py", old_string="return 1", new_string="return 2")
                ]
            },
            {"text": "Left as it is."},
            {"tool_calls": [call("shell", command="sleep 60"), call("read", path="src/util.py")]},
        )
    )
    async with running_app(server.url, own_repo) as (app, pilot):
        await send(app, pilot, "Change the total")
        await until(pilot, lambda: asking_about(app, "src/util.py"))
        await pilot.press("y")
        await until(pilot, lambda: asking_about(app, "src/app.py"))
        await pilot.press("n", *"not this way", "enter")
        await until(pilot, lambda: "Left as it is." in chat_entries(app))
        await until(pilot, lambda: app.status.activity == "")

        await send(app, pilot, "Wait a minute")
        await allow_if_asked(app, pilot)
        await pilot.press("escape")
        await until(pilot, lambda: chat_entries(app)[-1].startswith("Interrupted"))
        live = [e for e in chat_entries(app) if e[:1] in "✓✗!"]
        live_results = tool_results(app)
        totals = app.status.usage
        await until(pilot, lambda: all(e.state == "done" for e in tool_entries(app)))

    assert live[0] == "✓ edit src/util.py (allowed once)"
    assert live[1] == "✓ read README.md"
    assert live[2] == "✗ edit src/app.py denied: not this way"
    assert live[3].startswith('! shell "sleep 60" error: approved and started, then killed after')
    assert live[3].endswith("before it finished: interrupted by the user")
    assert live[4] == "! read src/util.py error: not run: interrupted by the user"
    assert live_results[0] == "  ⎿ Done: edited src/util.py."
    assert live_results[1].startswith("  ⎿ 3 lines")
    assert live_results[3].startswith("  ⎿ killed after")
    assert totals.input_tokens > 0

    async with running_app(server.url, own_repo) as (app, pilot):
        await until(pilot, lambda: "Left as it is." in chat_entries(app))
        assert [e for e in chat_entries(app) if e[:1] in "✓✗!"] == live
        assert tool_results(app) == live_results
        assert app.status.usage == totals


async def test_calls_the_server_runs_end_live_as_after_a_restart(
    server: BackgroundServer, own_repo: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {
                "tool_calls": [
                    call("archival_insert", text="The build uses uv."),
                    call("memory_replace", label="nosuch", old_string="a", new_string="b"),
                ]
            },
            {"text": "Noted."},
        )
    )
    async with running_app(server.url, own_repo) as (app, pilot):
        await send(app, pilot, "Remember how we build")
        await until(pilot, lambda: "Noted." in chat_entries(app))
        await until(pilot, lambda: all(e.state == "done" for e in tool_entries(app)))
        live = [e for e in chat_entries(app) if e[:1] in "✓✗!·"]
        live_results = tool_results(app)

    assert live[0].startswith("✓ archival_insert")
    assert live[1].startswith("! memory_replace") and "nosuch" in live[1]
    assert live_results and live_results[0].startswith("  ⎿ ")

    async with running_app(server.url, own_repo) as (app, pilot):
        await until(pilot, lambda: "Noted." in chat_entries(app))
        assert [e for e in chat_entries(app) if e[:1] in "✓✗!·"] == live
        assert tool_results(app) == live_results


async def test_calls_the_server_refuses_show_live_as_after_a_restart(
    server: BackgroundServer, own_repo: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {
                "tool_calls": [
                    call("read"),  # no path
                    call("read", path="README.md", offset="ten"),
                    {"name": "grep", "raw_arguments": '{"pattern": "TODO"'},
                    call("teleport", where="mars"),
                ]
            },
            {"tool_calls": [call("read", path="README.md")]},
            {"text": "Read it at last."},
        )
    )
    async with running_app(server.url, own_repo) as (app, pilot):
        await send(app, pilot, "Read the readme")
        await until(pilot, lambda: "Read it at last." in chat_entries(app))
        await until(pilot, lambda: all(e.state == "done" for e in tool_entries(app)))
        live = [e for e in chat_entries(app) if e[:1] in "✓✗!·"]
        live_results = tool_results(app)

    assert len(live) == 5, live
    assert live[0].startswith("! read error: invalid arguments for read: path")
    assert live[1].startswith("! read README.md error: invalid arguments for read: offset")
    assert live[2].startswith("! grep error: your arguments for grep are not valid JSON")
    assert live[3].startswith("! teleport error: unknown tool 'teleport'")
    assert live[4] == "✓ read README.md"

    async with running_app(server.url, own_repo) as (app, pilot):
        await until(pilot, lambda: "Read it at last." in chat_entries(app))
        assert [e for e in chat_entries(app) if e[:1] in "✓✗!·"] == live
        assert tool_results(app) == live_results

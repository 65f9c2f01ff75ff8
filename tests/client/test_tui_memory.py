"""The memory screen, the context panel and /init in the real TUI, against a real server.

Covers what a person notices: blocks listed and saved, a stale save that keeps their text,
create and delete with confirmation, history with revert, the context by section, and errors
shown as notifications while the app keeps working.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cairn_client.api import CairnApi
from cairn_client.tui.app import CairnApp
from cairn_client.tui.screens.context import ContextScreen
from cairn_client.tui.screens.memory import MemoryScreen
from cairn_client.tui.screens.memory_dialogs import (
    BlockHistoryScreen,
    ConfirmScreen,
    NewBlockScreen,
)
from cairn_fakes.runner import FakeModelServer
from cairn_server.api.background import BackgroundServer
from cairn_server.context.compiler import SECTION_ORDER

# The scripted session lives with the behaviour tests (pytest puts this folder on sys.path).
from support.scripted_tui import ScriptedSession, welcome
from support.servers import TEST_TOKEN, call, script
from support.sessions import sessions_for
from support.tui import chat_entries, rendered_text
from support.waiting import until
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Label, Static

SIZE = (120, 36)


@asynccontextmanager
async def running_app(
    server: BackgroundServer, repo: Path
) -> AsyncIterator[tuple[CairnApp, Pilot[Any], CairnApi]]:
    """The app connected to the server, and a REST client of the test's own."""
    app = CairnApp(
        sessions_for(server.url, repo),
        workspace_name="repo",
        api=CairnApi(server.url, TEST_TOKEN),
    )
    async with CairnApi(server.url, TEST_TOKEN) as api, app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.agent_id is not None)
        yield app, pilot, api


def notices(app: CairnApp) -> list[str]:
    return [notification.message for notification in app._notifications]


def memory_screen(app: CairnApp) -> MemoryScreen:
    assert isinstance(app.screen, MemoryScreen)
    return app.screen


def option_texts(screen: MemoryScreen) -> list[str]:
    options = [
        screen.block_list.get_option_at_index(i) for i in range(screen.block_list.option_count)
    ]
    return [" ".join(str(option.prompt).split()) for option in options]


def label_text(screen: Any, selector: str) -> str:
    return str(screen.query_one(selector, Label).content)


async def open_memory(app: CairnApp, pilot: Pilot[Any], select: str = "project") -> MemoryScreen:
    """F2, then move down the list to `select` and into its editor, as a person would."""
    await pilot.press("f2")
    await until(pilot, lambda: isinstance(app.screen, MemoryScreen))
    screen = memory_screen(app)
    await until(pilot, lambda: screen.block_list.option_count >= 3)
    while screen.selected != select:
        await pilot.press("down")
    await pilot.press("enter")
    await until(pilot, lambda: app.focused is screen.editor)
    return screen


# ---------------------------------------------------------------- blocks


async def test_the_memory_screen_lists_blocks_and_saves_an_edit(
    server: BackgroundServer, repo: Path
) -> None:
    async with running_app(server, repo) as (app, pilot, api):
        screen = await open_memory(app, pilot)
        assert option_texts(screen) == [
            "persona 197/2,000 · v1",
            "human 0/2,000 · v1",
            "project 0/8,000 · v1",
        ]
        assert label_text(screen, "#memory-title") == "project · v1"
        assert label_text(screen, "#memory-state") == "0/8,000 chars · saved"

        await pilot.press(*"make")
        await until(pilot, lambda: "unsaved" in label_text(screen, "#memory-state"))
        assert label_text(screen, "#memory-state") == "4/8,000 chars · unsaved — ctrl+s saves"
        assert option_texts(screen)[2].startswith("project *")

        await pilot.press("ctrl+s")
        await until(pilot, lambda: "Saved project · v2" in notices(app))
        block = await api.get_block(app.agent_id or "", "project")
        assert (block.version, block.value) == (2, "make")
        assert option_texts(screen)[2] == "project 4/8,000 · v2"
        assert label_text(screen, "#memory-state") == "4/8,000 chars · saved"

        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, MemoryScreen))
        assert app.focused is app.query_one("#prompt")


async def test_a_save_after_someone_else_changed_the_block_keeps_the_text(
    server: BackgroundServer, repo: Path
) -> None:
    async with running_app(server, repo) as (app, pilot, api):
        agent_id = app.agent_id or ""
        screen = await open_memory(app, pilot)
        await pilot.press(*"mine")
        await api.update_block(agent_id, "project", value="theirs")  # e.g. the agent, meanwhile

        await pilot.press("ctrl+s")
        await until(pilot, lambda: any("changed meanwhile" in n for n in notices(app)))
        assert screen.editor.text == "mine"
        assert (await api.get_block(agent_id, "project")).value == "theirs"
        assert label_text(screen, "#memory-state").startswith(
            "4/8,000 chars · changed meanwhile (now v2)"
        )

        await pilot.press("ctrl+s")  # now knowingly over the newer version
        await until(pilot, lambda: "Saved project · v3" in notices(app))
        assert (await api.get_block(agent_id, "project")).value == "mine"


async def test_a_saved_secret_is_cut_and_the_editor_shows_what_was_stored(
    server: BackgroundServer, repo: Path
) -> None:
    password = "Wq7Rz2Lm9Xc4Tv"
    async with running_app(server, repo) as (app, pilot, api):
        screen = await open_memory(app, pilot)
        screen.editor.insert(f"staging: postgres://app:{password}@db/app")
        await pilot.press("ctrl+s")
        note = "Saved project · v2 · 1 secret redacted before storing"
        await until(pilot, lambda: note in notices(app))
        stored = "staging: postgres://app:[REDACTED:secret-value]@db/app"
        assert (await api.get_block(app.agent_id or "", "project")).value == stored
        assert screen.editor.text == stored
        assert label_text(screen, "#memory-state").endswith("chars · saved")


async def test_unsaved_text_survives_switching_blocks_and_closing_the_screen(
    server: BackgroundServer, repo: Path
) -> None:
    async with running_app(server, repo) as (app, pilot, _api):
        screen = await open_memory(app, pilot, select="human")
        await pilot.press(*"tabs")
        await pilot.press("shift+tab", "down")  # back to the list, on to project
        await until(pilot, lambda: screen.selected == "project")
        assert screen.editor.text == ""
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, MemoryScreen))
        assert "Unsaved changes kept for human (f2 comes back to them)." in notices(app)

        screen = await open_memory(app, pilot, select="human")
        assert screen.editor.text == "tabs"
        assert option_texts(screen)[1].startswith("human *")


async def test_blocks_are_created_and_deleted_with_confirmation(
    server: BackgroundServer, repo: Path
) -> None:
    async with running_app(server, repo) as (app, pilot, api):
        agent_id = app.agent_id or ""
        screen = await open_memory(app, pilot)
        await pilot.press("ctrl+n")
        await until(pilot, lambda: isinstance(app.screen, NewBlockScreen))
        dialog = app.screen
        dialog.query_one("#new-label", Input).value = "Bad Label"
        await pilot.press("enter")
        await until(pilot, lambda: label_text(dialog, "#new-error") != "")
        assert label_text(dialog, "#new-error").startswith("Not created: invalid block label")
        assert app.screen is dialog

        dialog.query_one("#new-label", Input).value = "testing"
        dialog.query_one("#new-description", Input).value = "How to test"
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is screen and screen.selected == "testing")
        assert "testing 0/5,000 · v1" in option_texts(screen)
        assert label_text(screen, "#memory-description") == "How to test"

        await pilot.press("f8")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen)
        assert (await api.get_block(agent_id, "testing")).version == 1

        await pilot.press("f8")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: "testing" not in " ".join(option_texts(screen)))
        assert [block.label for block in await api.list_blocks(agent_id)] == [
            "persona",
            "human",
            "project",
        ]
        assert "Deleted testing (v1 stays in its history)" in notices(app)


async def test_history_shows_each_version_and_reverts_to_one(
    server: BackgroundServer, repo: Path
) -> None:
    async with running_app(server, repo) as (app, pilot, api):
        agent_id = app.agent_id or ""
        await api.update_block(agent_id, "project", value="one\n")
        await api.update_block(agent_id, "project", value="two\n", reason="second thoughts")
        screen = await open_memory(app, pilot)
        assert screen.editor.text == "two\n"

        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, BlockHistoryScreen))
        history = app.screen
        table = history.query_one("#history-table", DataTable)
        await until(pilot, lambda: table.row_count == 3)
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(3)]
        assert [(row[0], row[2], row[3], row[4]) for row in rows] == [
            ("v3", "edit", "user local", "second thoughts"),
            ("v2", "edit", "user local", ""),
            ("v1", "create", "system", "default block"),
        ]
        diff = rendered_text(history.query_one("#history-diff", Static))
        assert "-one" in diff and "+two" in diff

        await pilot.press("down")
        await until(pilot, lambda: "+one" in rendered_text(history.query_one("#history-diff")))
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: app.screen is screen and screen.editor.text == "one\n")
        block = await api.get_block(agent_id, "project")
        assert (block.version, block.value) == (4, "one\n")
        assert label_text(screen, "#memory-title") == "project · v4"


async def test_an_edit_by_the_agent_shows_when_its_run_ends(
    server: BackgroundServer, repo: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"tool_calls": [call("memory_rethink", label="human", new_value="Likes tabs.")]},
            {"text": "Noted."},
        )
    )
    async with running_app(server, repo) as (app, pilot, api):
        screen = await open_memory(app, pilot, select="human")
        app.query_one("#prompt", Input).value = "I like tabs"
        await app.query_one("#prompt", Input).action_submit()  # sent from under the screen
        await until(pilot, lambda: screen.editor.text == "Likes tabs.")
        assert label_text(screen, "#memory-title") == "human · v2"
        assert option_texts(screen)[1] == "human 11/2,000 · v2"
        history = await api.block_history(app.agent_id or "", "human")
        assert (history[0].author_kind, history[0].tool) == ("agent", "memory_rethink")
        assert history[0].conversation_id == app.conversation_id


# ---------------------------------------------------------------- context and /init


async def test_the_context_panel_shows_sections_tokens_and_the_budget(
    server: BackgroundServer, repo: Path
) -> None:
    async with running_app(server, repo) as (app, pilot, api):
        await api.update_block(app.agent_id or "", "project", value="A shop API in FastAPI.")
        await pilot.press("f3")
        await until(pilot, lambda: isinstance(app.screen, ContextScreen))
        panel = app.screen
        assert isinstance(panel, ContextScreen)
        table = panel.query_one("#context-table", DataTable)
        await until(pilot, lambda: table.row_count > 0)
        assert panel.report is not None
        names = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        sections = [name for name in names if not name.startswith(" ")]
        assert sections == list(SECTION_ORDER)
        assert "  read" in names  # the tools section's items, indented under it
        budget = rendered_text(panel.query_one("#context-budget"))
        assert f"{panel.report.total_tokens:,} of {panel.report.budget:,} tokens" in budget

        while str(table.get_row_at(table.cursor_row)[0]) != "memory_blocks":
            await pilot.press("down")
        await until(
            pilot,
            lambda: (
                "A shop API in FastAPI." in str(panel.query_one("#context-text", Static).content)
            ),
        )
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ContextScreen))


async def test_init_asks_the_agent_to_learn_the_repository(
    server: BackgroundServer, repo: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "I read the README; the project block is written."}))
    async with running_app(server, repo) as (app, pilot, _api):
        app.query_one("#prompt", Input).value = "/init"
        await pilot.press("enter")
        await until(pilot, lambda: len(chat_entries(app)) >= 2 and app.status.activity == "")
        assert chat_entries(app) == [
            "/init",
            "I read the README; the project block is written.",
        ]
        sent = json.dumps(fake_model.requests[-1].body)
        assert "Learn this repository the way a new engineer would" in sent


# ---------------------------------------------------------------- errors never crash the app


async def test_an_unreachable_server_is_a_notification_and_the_app_keeps_working() -> None:
    session = ScriptedSession(welcome())
    app = CairnApp(
        session.start, workspace_name="shop-api", api=CairnApi("http://127.0.0.1:9", TEST_TOKEN)
    )
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.agent_id == "agent-1")
        await pilot.press("f2")
        expected = "cannot reach the Cairn server at http://127.0.0.1:9: connection refused"
        await until(pilot, lambda: expected in notices(app))
        assert label_text(app.screen, "#memory-title") == "Could not load memory"
        await pilot.press("escape", "f3")
        await until(pilot, lambda: isinstance(app.screen, ContextScreen))
        await until(
            pilot,
            lambda: "Could not load" in rendered_text(app.screen.query_one("#context-budget")),
        )
        await pilot.press("escape")
        app.query_one("#prompt", Input).value = "still here"
        await pilot.press("enter")
        await until(pilot, lambda: session.sent == ["still here"])


async def test_memory_and_context_need_a_server_address() -> None:
    session = ScriptedSession(welcome())
    app = CairnApp(session.start, workspace_name="shop-api")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.agent_id == "agent-1")
        app.query_one("#prompt", Input).value = "/memory"
        await pilot.press("enter", "f3")
        await pilot.pause()
        assert notices(app) == [
            "Cannot show memory: no server address is known.",
            "Cannot show the context: no server address is known.",
        ]
        assert not isinstance(app.screen, (MemoryScreen, ContextScreen))
        app.query_one("#prompt", Input).value = "/nope"
        await pilot.press("enter")
        await pilot.pause()
        assert chat_entries(app)[-1] == (
            "Unknown command /nope "
            "(try /memory (f2), /context (f3), /init, /compact [focus], /reflect, /undo, "
            "/mode [name], /model [name], /cost, /new, /clear, /resume or /quit)"
        )

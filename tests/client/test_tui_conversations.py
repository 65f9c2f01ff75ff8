"""/new and /resume in the real TUI against a real server: a new conversation starts empty,
the picker lists the agent's conversations and opens the chosen one with its history and its
context gauge, and a new TUI reopens the conversation it last had open, gauge included.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cairn_client.api import CairnApi
from cairn_client.tui.app import CairnApp
from cairn_client.tui.screens.conversations import ConversationsScreen
from cairn_fakes.runner import FakeModelServer
from support.servers import TEST_TOKEN, cairn_server, script, sqlite_url
from support.sessions import sessions_for
from support.tui import chat_entries, rendered_text, status_text
from support.waiting import until
from textual.pilot import Pilot
from textual.widgets import Input, OptionList

SIZE = (120, 36)


@asynccontextmanager
async def running_app(
    url: str, repo: Path, *, pick: bool = False
) -> AsyncIterator[tuple[CairnApp, Pilot[Any]]]:
    start = sessions_for(url, repo, conversation="reopen", interactive=True)
    app = CairnApp(
        start, workspace_name="repo", api=CairnApi(url, TEST_TOKEN), pick_conversation=pick
    )
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.conversation_id is not None)
        yield app, pilot


def gauge(app: CairnApp) -> str | None:
    """The status line's context gauge as the person reads it (`ctx 1.2k/100k`)."""
    found = re.search(r"ctx \S+", status_text(app))
    return found.group() if found else None


async def exchange(app: CairnApp, pilot: Pilot[Any], text: str, answer: str) -> None:
    app.query_one("#prompt", Input).value = text
    await pilot.press("enter")
    await until(pilot, lambda: answer in chat_entries(app) and app.status.activity == "")


async def test_new_starts_an_empty_conversation_and_resume_opens_the_first_again(
    tmp_path: Path, own_repo: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "The build uses make."}, {"text": "Renamed."}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        async with running_app(server.url, own_repo) as (app, pilot):
            await exchange(app, pilot, "How is the project built?", "The build uses make.")
            first = app.conversation_id
            assert app.status.usage.input_tokens > 0
            first_context, first_gauge = app.status.context, gauge(app)
            assert first_context is not None and first_gauge is not None

            app.query_one("#prompt", Input).value = "/new"
            await pilot.press("enter")
            await until(pilot, lambda: app.conversation_id not in (None, first))
            assert chat_entries(app) == ["New conversation (the agent's memory stays)."]
            assert app.status.usage.input_tokens == 0
            assert gauge(app) is None  # nothing sent in this one yet
            await exchange(app, pilot, "Rename the flag", "Renamed.")
            second = app.conversation_id
            assert app.status.context not in (None, first_context)

            app.query_one("#prompt", Input).value = "/resume"
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConversationsScreen))
            listing = app.screen.query_one(OptionList)
            await until(pilot, lambda: listing.option_count == 2)
            shown = rendered_text(listing)
            assert "Rename the flag" in shown and "2 messages" in shown and "open now" in shown
            assert shown.index("Rename the flag") < shown.index("How is the project built?")
            await pilot.press("down", "enter")
            await until(pilot, lambda: app.conversation_id == first)
            await until(pilot, lambda: "The build uses make." in chat_entries(app))
            assert "How is the project built?" in chat_entries(app)
            assert "Renamed." not in chat_entries(app)
            assert (app.status.context, gauge(app)) == (first_context, first_gauge)

            app.query_one("#prompt", Input).value = "/resume"
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConversationsScreen))
            await pilot.press("escape")  # Esc goes back: the conversation stays
            await until(pilot, lambda: not isinstance(app.screen, ConversationsScreen))
            assert app.conversation_id == first

        # A new TUI reopens what the last one had open, not the most recent activity.
        async with running_app(server.url, own_repo) as (app, pilot):
            assert app.conversation_id == first != second
            await until(pilot, lambda: "The build uses make." in chat_entries(app))
            assert (app.status.context, gauge(app)) == (first_context, first_gauge)

        # `cairn --resume` without an id: the picker opens at start.
        async with running_app(server.url, own_repo, pick=True) as (app, pilot):
            await until(pilot, lambda: isinstance(app.screen, ConversationsScreen))
            await pilot.press("escape")
            assert app.conversation_id == first

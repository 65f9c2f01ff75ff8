"""Completion at the TUI's prompt (`/commands`, `@paths`) and `@file` attachments, under Pilot
with a scripted session and a real repository read by the real tools and policy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cairn_client.mentions import Mentions
from cairn_client.policy.settings import PolicySettings
from cairn_client.tui.widgets.prompt import CompletionMenu, PromptInput
from cairn_protocol.messages import HistoryItem, RunStarted
from support.repos import make_repo
from support.scripted_tui import scripted_run, settle, welcome
from support.settings import policy_for
from support.tui import chat_entries, rendered_text
from support.waiting import until
from textual.pilot import Pilot

FILES = {
    "src/app.py": "def total(items):\n    return sum(items)\n",
    "src/cart/checkout.py": "CHECKOUT = 1\n",
    "README.md": "# Shop\n",
    ".env": "API_KEY=sk-live-abcdef0123456789abcdef0123456789\n",
    "private/plan.md": "not for the model\n",
}


@pytest.fixture
def shop(tmp_path: Path) -> Mentions:
    root = make_repo(tmp_path / "shop", FILES)
    return Mentions(root, policy_for(PolicySettings(deny=["read(private/**)"])))


def prompt_of(pilot: Pilot[Any]) -> PromptInput:
    return pilot.app.query_one("#prompt", PromptInput)


def menu_of(pilot: Pilot[Any]) -> CompletionMenu:
    return pilot.app.query_one("#completions", CompletionMenu)


async def listed(pilot: Pilot[Any], shop: Mentions) -> None:
    """Wait for the first listing of the workspace (a thread worker at start)."""
    await until(pilot, lambda: bool(shop.index.paths), message="the workspace is listed")
    await settle(pilot)


async def test_at_offers_workspace_files_and_never_denied_or_secret_ones(shop: Mentions) -> None:
    async with scripted_run(mentions=shop) as (_app, _session, pilot):
        await listed(pilot, shop)
        await pilot.press(*"look at @")
        await settle(pilot)
        shown = rendered_text(menu_of(pilot))
        assert "README.md" in shown and "src/" in shown
        assert ".env" not in shown and "private" not in shown
        await pilot.press(*"check")
        await settle(pilot)
        assert menu_of(pilot).display
        assert rendered_text(menu_of(pilot)).splitlines()[0].strip() == "src/cart/checkout.py"
        await pilot.press("tab")
        await settle(pilot)
        assert prompt_of(pilot).value == "look at @src/cart/checkout.py "
        assert not menu_of(pilot).display


async def test_a_folder_completes_to_its_files_and_arrows_choose(shop: Mentions) -> None:
    async with scripted_run(mentions=shop) as (_app, _session, pilot):
        await listed(pilot, shop)
        await pilot.press(*"@sr", "tab")
        await settle(pilot)
        assert prompt_of(pilot).value == "@src/"
        assert menu_of(pilot).display  # the folder's files are offered next
        await pilot.press(*"ap", "down", "up", "enter")  # enter accepts while the list is open
        await settle(pilot)
        assert prompt_of(pilot).value == "@src/app.py "


async def test_slash_completion_lists_commands_and_escape_closes_it(shop: Mentions) -> None:
    async with scripted_run(mentions=shop) as (app, session, pilot):
        await pilot.press(*"/co")
        await settle(pilot)
        lines = rendered_text(menu_of(pilot)).splitlines()
        assert [line.split()[0] for line in lines] == ["/context", "/compact", "/cost"]
        await pilot.press("escape")
        await settle(pilot)
        assert not menu_of(pilot).display and prompt_of(pilot).value == "/co"
        await pilot.press("backspace", "backspace", *"cos", "enter")  # /cost runs at once
        await settle(pilot)
        assert any("This session:" in entry for entry in chat_entries(app))
        assert session.sent == []


async def test_enter_sends_a_command_typed_in_full_though_a_longer_one_is_offered(
    shop: Mentions,
) -> None:
    async with scripted_run(mentions=shop, policy=shop.policy) as (app, _session, pilot):
        await pilot.press(*"/mode")
        await settle(pilot)
        assert "/model" in rendered_text(menu_of(pilot))  # offered, as /mode is
        await pilot.press("enter")
        await settle(pilot)
        assert any(entry.startswith("Permission mode:") for entry in chat_entries(app))
        assert prompt_of(pilot).value == ""


async def test_up_browses_history_when_no_list_is_open(shop: Mentions) -> None:
    async with scripted_run(mentions=shop) as (app, _session, pilot):
        app.history.add("earlier request")
        await pilot.press("up")
        await settle(pilot)
        assert prompt_of(pilot).value == "earlier request"


async def test_a_mentioned_file_is_sent_with_the_message_and_shown_as_attached(
    shop: Mentions,
) -> None:
    async with scripted_run(mentions=shop) as (app, session, pilot):
        await listed(pilot, shop)
        prompt_of(pilot).value = "explain @src/app.py and @private/plan.md"
        await pilot.press("end", "space", "enter")
        await settle(pilot)
        [sent] = session.sent
        assert sent.startswith("explain @src/app.py and @private/plan.md")
        assert '<attached-file path="src/app.py">\n1\tdef total(items):' in sent
        assert "not for the model" not in sent
        entries = chat_entries(app)
        assert "Attached src/app.py (2 lines)" in entries
        assert any(
            entry.startswith("@private/plan.md not attached: denied by rule read(private/**)")
            for entry in entries
        )
        assert not any("def total" in entry for entry in entries)
        # The run the server starts for it is not shown a second time.
        session.events(RunStarted(seq=4, run_id="run-1", user_text=sent))
        await settle(pilot)
        assert chat_entries(app) == entries


async def test_history_shows_what_was_typed_and_names_the_files(shop: Mentions) -> None:
    sent = 'see @README.md\n\n<attached-file path="README.md">\n1\t# Shop\n</attached-file>'
    history = [HistoryItem(role="user", text=sent)]
    async with scripted_run(welcome(history=history), mentions=shop) as (app, _session, pilot):
        await settle(pilot)
        shown = "\n".join(chat_entries(app))
        assert "see @README.md" in shown and "(attached README.md)" in shown
        assert "# Shop" not in shown

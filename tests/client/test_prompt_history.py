"""The prompt's history: up and down through what was sent, kept per workspace across runs."""

from __future__ import annotations

import stat
from pathlib import Path

from cairn_client.prompt_history import MAX_ENTRIES, PromptHistory
from support.scripted_tui import scripted_run, settle, type_and_send
from textual.widgets import Input


def test_up_walks_back_and_down_returns_to_what_was_being_typed(tmp_path: Path) -> None:
    history = PromptHistory.in_data_dir(tmp_path, Path("/repo"))
    for text in ("first", "second", "second", "  "):
        history.add(text)
    assert history.entries == ["first", "second"]  # no repeat in a row, no blank
    assert history.previous("half-typed") == "second"
    assert history.previous("second") == "first"
    assert history.previous("first") is None  # the oldest stays
    assert history.next() == "second"
    assert history.next() == "half-typed"
    assert history.next() is None


def test_it_is_kept_per_workspace_privately_and_bounded(tmp_path: Path) -> None:
    here = PromptHistory.in_data_dir(tmp_path, Path("/repo"))
    for n in range(MAX_ENTRIES + 5):
        here.add(f"prompt {n}")
    again = PromptHistory.in_data_dir(tmp_path, Path("/repo"))
    assert again.entries == here.entries and len(again.entries) == MAX_ENTRIES
    assert again.entries[-1] == f"prompt {MAX_ENTRIES + 4}"
    assert PromptHistory.in_data_dir(tmp_path, Path("/other")).entries == []
    assert here.path is not None and stat.S_IMODE(here.path.stat().st_mode) == 0o600


def test_a_torn_line_loses_only_itself(tmp_path: Path) -> None:
    history = PromptHistory.in_data_dir(tmp_path, Path("/repo"))
    history.add("kept")
    assert history.path is not None
    with history.path.open("a") as file:
        file.write('"cut in the midd')
    assert PromptHistory.in_data_dir(tmp_path, Path("/repo")).entries == ["kept"]


async def test_the_prompt_browses_what_was_sent_with_up_and_down() -> None:
    async with scripted_run() as (app, _session, pilot):
        await type_and_send(pilot, "explain the build")
        await type_and_send(pilot, "/help")
        prompt = app.query_one("#prompt", Input)
        await pilot.press(*"draft")
        await pilot.press("up")
        assert prompt.value == "/help"
        await pilot.press("up")
        assert prompt.value == "explain the build"
        await pilot.press("down", "down")
        await settle(pilot)
        assert prompt.value == "draft"

"""Conversations you can find again: titles from the first request, the list with message
counts, and the conversation the TUI reopens, which headless runs never take over.

Through the real server, its SQLite store and a fake model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, UserMessage, Welcome
from cairn_server.storage.store import conversation_title
from support.servers import TEST_TOKEN, cairn_server, call, script, sqlite_url
from support.wire import WireClient


async def opened(url: str, conversation: str = "reopen", *, interactive: bool) -> Welcome:
    client = await WireClient.connect(url)
    welcome = await client.hello(conversation=conversation, interactive=interactive)
    assert isinstance(welcome, Welcome), welcome
    await client.close()
    return welcome


async def say(url: str, conversation: str, text: str, *, interactive: bool = False) -> str:
    """Open `conversation`, send `text`, wait for the run's end; the conversation's id."""
    client = await WireClient.connect(url)
    welcome = await client.hello(conversation=conversation, interactive=interactive)
    assert isinstance(welcome, Welcome), welcome
    await client.send(UserMessage(text=text))
    await client.recv_until(RunFinished)
    await client.close()
    return welcome.conversation_id


async def conversations(url: str, agent_id: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as http:
        answer = await http.get(f"/v1/agents/{agent_id}/conversations")
    assert answer.status_code == 200, answer.text
    listed: list[dict[str, Any]] = answer.json()
    return listed


def test_a_title_is_the_first_line_cut_at_a_word() -> None:
    assert conversation_title("\n  Fix the login bug  \nin auth.py, please") == "Fix the login bug"
    long = "Refactor the session module so that reconnecting keeps the conversation and the runs"
    title = conversation_title(long)
    assert title == "Refactor the session module so that reconnecting keeps the…"
    assert len(title) <= 61 and long.startswith(title[:-1])
    assert conversation_title("x" * 100) == "x" * 60 + "…"
    assert conversation_title("   \n  ") == ""


async def test_titles_and_counts_are_listed_newest_first(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "one"}, {"text": "two"}, {"text": "three"}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        first = await say(server.url, "new", "Explain the build\nwith details")
        await say(server.url, first, "and the tests?")  # the title stays the first request's
        second = await say(server.url, "new", "Rename the CLI flags")
        empty = await opened(server.url, "new", interactive=False)
        listed = await conversations(server.url, empty.agent_id)
    by_id = {row["id"]: row for row in listed}
    assert by_id[first]["title"] == "Explain the build"
    assert by_id[first]["message_count"] == 4  # two requests, two answers
    assert by_id[second]["title"] == "Rename the CLI flags"
    assert by_id[second]["message_count"] == 2
    assert by_id[empty.conversation_id]["title"] == ""
    assert by_id[empty.conversation_id]["message_count"] == 0
    active = [row["id"] for row in listed if row["message_count"]]
    assert active == [second, first]  # most recent activity first


async def test_headless_runs_never_change_the_conversation_the_tui_reopens(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "tui"}, {"text": "headless"}, {"text": "again"}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        tui = await say(server.url, "reopen", "work in the TUI", interactive=True)
        headless = await say(server.url, "new", "a quick headless question")
        assert headless != tui
        reopened = await opened(server.url, interactive=True)
        assert reopened.conversation_id == tui
        assert [item.text for item in reopened.history] == ["work in the TUI", "tui"]
        # `cairn -p -c` continues the latest by activity: the headless one.
        continued = await say(server.url, "latest", "a follow-up")
        assert continued == headless
        assert (await opened(server.url, interactive=True)).conversation_id == tui
        # `cairn -c` in the TUI continues that one, and reopens it next time.
        again = await opened(server.url, "latest", interactive=True)
        assert again.conversation_id == headless
        assert (await opened(server.url, interactive=True)).conversation_id == headless
        # The TUI switching conversation (/new) is what changes what it reopens.
        switched = await opened(server.url, "new", interactive=True)
        assert (await opened(server.url, interactive=True)).conversation_id == (
            switched.conversation_id
        )


async def test_a_block_edited_in_one_conversation_is_in_a_new_ones_prompt(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"tool_calls": [call("memory_insert", label="project", text="Deploy: make ship")]},
            {"text": "Noted."},
            {"text": "make ship"},
        )
    )
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        await say(server.url, "new", "remember: deploy with make ship")
        await say(server.url, "new", "how do I deploy?")
    system = json.dumps(fake_model.requests[-1].body["messages"][0])
    assert "Deploy: make ship" in system

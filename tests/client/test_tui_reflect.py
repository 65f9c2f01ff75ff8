"""/reflect in the real TUI against a real server: the reflection's edits and cost are shown,
and a message sent while it runs is answered as usual.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cairn_client.api import CairnApi
from cairn_client.tui.app import CairnApp
from cairn_fakes.runner import FakeModelServer
from support.servers import TEST_TOKEN, Served, cairn_server, call, script, sqlite_url
from support.sessions import sessions_for
from support.tui import chat_entries, status_text
from support.waiting import scaled, until
from textual.widgets import Input

SIZE = (160, 36)


@pytest.fixture
def reflecting_server(tmp_path: Path) -> Iterator[Served]:
    """A server of the test's own; reflections only when asked (no idle trigger)."""
    with (
        FakeModelServer() as fake,
        cairn_server(sqlite_url(tmp_path), fake, env={"CAIRN_REFLECTION_IDLE_S": "0"}) as server,
    ):
        yield Served(server.url, fake)


async def test_reflect_shows_its_edits_and_cost_while_a_message_runs_as_usual(
    reflecting_server: Served, own_repo: Path
) -> None:
    fake = reflecting_server.fake
    fake.set_script(
        script(
            {"text": "Noted: make check runs the tests."},
            {  # the reflection: slow, so the next message is sent while it runs
                "delay_s": scaled(4),
                "tool_calls": [
                    call("memory_insert", label="project", text="- Tests: make check"),
                    call("memory_rethink", label="nowhere", new_value="x"),
                ],
            },
            {"text": "Quick answer."},
        )
    )
    url = reflecting_server.url
    api = CairnApi(url, TEST_TOKEN)
    app = CairnApp(sessions_for(url, own_repo), workspace_name="repo", api=api)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.agent_id is not None)
        prompt = app.query_one("#prompt", Input)
        prompt.value = "The tests run with make check."
        await pilot.press("enter")
        await until(pilot, lambda: "Noted: make check runs the tests." in chat_entries(app))
        await until(pilot, lambda: app.status.activity == "")

        prompt.value = "/reflect"
        await pilot.press("enter")
        await until(pilot, lambda: len(fake.requests) == 2)  # the reflection is being answered
        prompt.value = "quick question"
        await pilot.press("enter")
        await until(pilot, lambda: "Quick answer." in chat_entries(app))

        await until(pilot, lambda: any(e.startswith("Reflection (") for e in chat_entries(app)))
        notice = next(e for e in chat_entries(app) if e.startswith("Reflection ("))
        assert notice.startswith(
            "Reflection (openai/gpt-4o-mini): 1 memory edit (project v2), 1 refused; in "
        )
        assert "refused memory_rethink on nowhere: no block 'nowhere'" in notice
        await until(pilot, lambda: "reflection $" in status_text(app))

        prompt.value = "/cost"
        await pilot.press("enter")
        await until(pilot, lambda: "Reflection, this conversation: in " in chat_entries(app)[-1])
        conversation_id = app.conversation_id
        assert conversation_id is not None
        agent_id = app.agent_id
        assert agent_id is not None

    runs = await api.list_runs(conversation_id)
    (reflection,) = await api.list_reflections(conversation_id)
    block = await api.get_block(agent_id, "project")
    await api.aclose()
    # The message sent during the reflection started before the reflection ended, and its
    # run ended as any other.
    assert [run.stop_reason for run in runs] == ["end_turn", "end_turn"]
    assert reflection.finished_at is not None and runs[1].created_at < reflection.finished_at
    assert block.value == "- Tests: make check"

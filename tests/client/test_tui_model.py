"""`/model` in the real TUI against a real server: which model the agent uses and which the
server's default is, a switch the next message uses, and an unknown name or one the provider
does not have refused in one line with the model unchanged."""

from __future__ import annotations

from pathlib import Path

from cairn_client.api import CairnApi
from cairn_client.tui.app import CairnApp
from cairn_fakes.runner import FakeModelServer
from cairn_server.api.background import BackgroundServer
from support.scripted_tui import type_and_send
from support.servers import TEST_TOKEN, script
from support.sessions import sessions_for
from support.tui import chat_entries, status_text
from support.waiting import until


async def test_model_shows_switches_and_refuses_in_the_tui(
    server: BackgroundServer, repo: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "Answered by haiku."}))
    app = CairnApp(
        sessions_for(server.url, repo), workspace_name="repo", api=CairnApi(server.url, TEST_TOKEN)
    )
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.agent_id is not None)
        await type_and_send(pilot, "/model")
        await until(pilot, lambda: any(e.startswith("Model: ") for e in chat_entries(app)))
        assert "Model: openai/gpt-4o-mini (the server's default)" in chat_entries(app)[-1]

        await type_and_send(pilot, "/model gpt-5")
        await until(pilot, lambda: "not changed" in chat_entries(app)[-1])
        refusal = chat_entries(app)[-1]
        assert "'gpt-5'" in refusal and "openai/<model>" in refusal and "\n" not in refusal
        assert "gpt-4o-mini" in status_text(app)

        await type_and_send(pilot, "/model anthropic/claude-haiku-4-5")
        await until(pilot, lambda: "from the next message on" in chat_entries(app)[-1])
        assert "anthropic/claude-haiku-4-5" in status_text(app)
        await type_and_send(pilot, "who answers?")
        await until(pilot, lambda: "Answered by haiku." in chat_entries(app), timeout=60)
        assert fake_model.requests[-1].body["model"] == "claude-haiku-4-5"
        await pilot.press("ctrl+q")


async def test_model_names_the_servers_default_and_refuses_a_model_the_provider_lacks(
    server: BackgroundServer, repo: Path, fake_model: FakeModelServer
) -> None:
    app = CairnApp(
        sessions_for(server.url, repo), workspace_name="repo", api=CairnApi(server.url, TEST_TOKEN)
    )
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.agent_id is not None)
        await type_and_send(pilot, "/model openai/gpt-4.1")
        await until(pilot, lambda: "from the next message on" in chat_entries(app)[-1])
        await type_and_send(pilot, "/model")
        await until(pilot, lambda: "chosen for this agent" in chat_entries(app)[-1])
        assert chat_entries(app)[-1] == (
            "Model: openai/gpt-4.1 (chosen for this agent); /model NAME switches it, "
            "/model default goes back to the server's default (openai/gpt-4o-mini)."
        )

        await type_and_send(pilot, "/model default")
        await until(pilot, lambda: "the server's default" in chat_entries(app)[-1])
        said = "Model: the server's default (openai/gpt-4o-mini) from the next message on."
        assert chat_entries(app)[-1] == said
        assert "gpt-4o-mini" in status_text(app)

        await type_and_send(pilot, "/model openai/gpt-4o-mimi")
        await until(pilot, lambda: "not changed" in chat_entries(app)[-1])
        refusal = chat_entries(app)[-1]
        assert "has no model 'gpt-4o-mimi'" in refusal and "\n" not in refusal
        assert "it lists openai/gpt-4o-mini, " in refusal
        assert "gpt-4o-mini" in status_text(app)
        await pilot.press("ctrl+q")
    assert fake_model.requests == []

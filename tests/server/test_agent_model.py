"""The agent's own model over REST (what `/model` and `--model` use): checked by the server,
kept with the agent, and used from the next message of every open connection."""

from __future__ import annotations

import httpx
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, UserMessage, Welcome
from cairn_protocol.rest import MODEL_NOT_OFFERED
from cairn_server.config import ModelSettings
from cairn_server.providers.catalog import UnknownModelError, check_model
from support.servers import TEST_TOKEN, cairn_server, script
from support.wire import connected

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


async def test_a_switched_model_answers_the_next_message_and_is_kept(
    database_url: str, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "one"}, {"text": "two"}, {"text": "three"}))
    with cairn_server(database_url, fake_model) as server:
        wire, welcome = await connected(server.url)
        await wire.send(UserMessage(text="first"))
        await wire.recv_until(RunFinished)
        # The first Anthropic model loads its SDK (seconds on a busy machine) to list models.
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as http:
            answer = await http.patch(
                f"/v1/agents/{welcome.agent_id}", json={"model": "anthropic/claude-haiku-4-5"}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["model"] == "anthropic/claude-haiku-4-5"
            await wire.send(UserMessage(text="second"))  # the connection opened before
            # The first Anthropic request loads its SDK (seconds on a busy machine).
            await wire.recv_until(RunFinished, timeout=60)
            models = [request.body["model"] for request in fake_model.requests]
            assert models == ["gpt-4o-mini", "claude-haiku-4-5"]
            await wire.close()

            again, rewelcome = await connected(server.url)  # the next `cairn`
            assert rewelcome.model == "anthropic/claude-haiku-4-5"
            reset = await http.patch(f"/v1/agents/{welcome.agent_id}", json={"model": None})
            assert reset.json()["model"] is None
            await again.send(UserMessage(text="third"))
            await again.recv_until(RunFinished)
            assert fake_model.requests[-1].body["model"] == "gpt-4o-mini"
            await again.close()


async def test_an_unknown_model_is_refused_in_one_line_naming_what_the_server_runs(
    database_url: str, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "hi"}))
    with cairn_server(database_url, fake_model) as server:
        wire, welcome = await connected(server.url)
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
            agent = f"/v1/agents/{welcome.agent_id}"
            refused = await http.patch(agent, json={"model": "gpt-9"})
            assert refused.status_code == 422
            detail = refused.json()["detail"]
            assert "\n" not in detail
            assert "'gpt-9'" in detail and "did you mean openai/gpt-9" in detail
            assert "its default is openai/gpt-4o-mini" in detail
            kept = await http.get(agent)
            assert kept.json()["model"] is None  # nothing changed
        await wire.send(UserMessage(text="still works"))
        assert isinstance(await wire.recv_until(RunFinished), RunFinished)
        await wire.close()
        assert isinstance(welcome, Welcome)


def test_a_provider_without_its_key_is_named_with_the_ones_configured() -> None:
    settings = ModelSettings(openai_base_url="http://127.0.0.1:9/v1")
    try:
        check_model("anthropic/claude-sonnet-4-6", settings)
    except UnknownModelError as exc:
        said = str(exc)
    else:
        raise AssertionError("a model without its key was accepted")
    assert "needs ANTHROPIC_API_KEY" in said
    assert "this server runs openai/<model> (openai/ at http://127.0.0.1:9/v1)" in said
    assert check_model(" openai/llama ", settings) == "openai/llama"


async def test_a_model_its_provider_lacks_is_refused_by_name_with_the_closest_it_lists(
    database_url: str, fake_model: FakeModelServer
) -> None:
    with cairn_server(database_url, fake_model) as server:
        wire, welcome = await connected(server.url)
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
            agent = f"/v1/agents/{welcome.agent_id}"
            refused = await http.patch(agent, json={"model": "openai/gpt-4o-mimi"})
            assert refused.status_code == 422
            assert refused.json()["code"] == MODEL_NOT_OFFERED
            detail = refused.json()["detail"]
            assert "has no model 'gpt-4o-mimi'" in detail and "\n" not in detail
            assert "it lists openai/gpt-4o-mini, " in detail
            kept = (await http.get(agent)).json()
            assert (kept["model"], kept["default_model"]) == (None, "openai/gpt-4o-mini")
        await wire.close()
    assert fake_model.requests == []


async def test_a_default_model_its_provider_lacks_is_said_in_the_welcome(
    database_url: str, fake_model: FakeModelServer
) -> None:
    env = {"CAIRN_MODEL": "openai/gpt-nonexistent"}
    with cairn_server(database_url, fake_model, env=env) as server:
        wire, welcome = await connected(server.url)
        await wire.close()
    assert welcome.model == "openai/gpt-nonexistent" and welcome.model_not_offered
    assert welcome.model_problem is not None and "has no model 'gpt-nonexistent'" in (
        welcome.model_problem
    )
    assert fake_model.requests == []

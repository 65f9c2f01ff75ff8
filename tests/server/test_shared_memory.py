"""Memory across conversations and runs, through the real server and a fake model.

An edit in one conversation reaches the others at their next model call as an appended
note, while their cached prompt prefix stays byte-identical; /init and a first meeting
send the model off to learn the repository through the client's tools.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, ToolRequest, ToolResult, UserMessage, Welcome
from support.servers import TEST_TOKEN, cairn_server, call, script, sqlite_url
from support.wire import WireClient


def system_of(body: dict[str, Any]) -> str:
    """The system prompt as sent, for either wire protocol."""
    if "system" in body:
        system = body["system"]
        return system if isinstance(system, str) else json.dumps(system)
    return str(body["messages"][0]["content"])


def turns_of(body: dict[str, Any]) -> str:
    """The conversation turns as sent (without the system prompt), as JSON text."""
    messages = body["messages"]
    return json.dumps(messages if "system" in body else messages[1:])


async def open_conversation(url: str, conversation: str = "new") -> WireClient:
    client = await WireClient.connect(url)
    welcome = await client.hello(conversation=conversation)
    assert isinstance(welcome, Welcome), welcome
    return client


async def say(client: WireClient, text: str) -> None:
    await client.send(UserMessage(text=text))
    await client.recv_until(RunFinished)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_edit_in_one_conversation_reaches_the_other_as_a_note(
    tmp_path: Path, fake_model: FakeModelServer, provider: str
) -> None:
    fake_model.set_script(
        script(
            {"text": "Hello from B."},
            {"tool_calls": [call("memory_insert", label="project", text="Tests: make check")]},
            {"text": "Noted."},
            {"text": "Run make check."},
        )
    )
    with cairn_server(sqlite_url(tmp_path), fake_model, provider) as server:
        b = await open_conversation(server.url)
        await say(b, "hi")  # B's prompt prefix is frozen now, before the edit
        a = await open_conversation(server.url)
        await say(a, "remember: the tests run with make check")
        await say(b, "how do I run the tests?")
        first_b, a_step1, a_step2, second_b = [r.body for r in fake_model.requests]

        assert system_of(second_b) == system_of(first_b)  # the cached prefix is untouched
        note = json.dumps(second_b["messages"][-1])
        assert "memory_update" in note and "+Tests: make check" in note
        assert "by you in another conversation" in note
        assert "memory_update" not in turns_of(a_step2)  # A saw its own edit in the result
        assert "Tests: make check" in json.dumps(a_step2["messages"][-1])
        await a.close()
        await b.close()


async def test_a_user_edit_over_rest_reaches_a_running_conversation(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "one"}, {"text": "two"}, {"text": "three"}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client = await open_conversation(server.url)
        await say(client, "hi")
        welcome = next(f for f in client.seen if isinstance(f, Welcome))
        headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
            answer = await http.patch(
                f"/v1/agents/{welcome.agent_id}/blocks/human",
                json={"value": "Prefers answers in French.", "expected_version": 1},
            )
            assert answer.status_code == 200, answer.text
        await say(client, "bonjour")
        await say(client, "encore")
        first, second, third = [r.body for r in fake_model.requests]
        assert system_of(first) == system_of(second) == system_of(third)
        assert "Prefers answers in French." not in system_of(second)
        note = json.dumps(second["messages"][-1])
        assert "by the user" in note and "+Prefers answers in French." in note
        assert turns_of(third).count("memory_update") == 2  # told once: the two tags of one note
        await client.close()


async def test_init_learns_the_repository_through_client_tools(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"tool_calls": [call("glob", pattern="*")]},
            {"tool_calls": [call("read", path="README.md")]},
            {
                "tool_calls": [
                    call(
                        "memory_rethink",
                        label="project",
                        new_value="Build: make. Test: make check.",
                    )
                ]
            },
            {"text": "I learned the repository."},
        )
    )
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client = await open_conversation(server.url)
        await client.send(UserMessage(text="/init", command="init"))
        asked: list[str] = []
        for content in ("README.md\nMakefile", "# Demo\nRun `make check` to test."):
            request = await client.recv_until(ToolRequest)
            assert isinstance(request, ToolRequest)
            asked.append(request.tool)
            await client.send(ToolResult(call_id=request.call_id, status="ok", content=content))
        await client.recv_until(RunFinished)
        assert asked == ["glob", "read"]
        first_turns = turns_of(fake_model.requests[0].body)
        assert "Learn this repository" in first_turns and "README" in first_turns
        welcome = next(f for f in client.seen if isinstance(f, Welcome))
        headers = {"Authorization": f"Bearer {TEST_TOKEN}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
            project = (await http.get(f"/v1/agents/{welcome.agent_id}/blocks/project")).json()
        assert project["value"] == "Build: make. Test: make check."
        await client.close()


async def test_first_meeting_asks_to_learn_the_repository_once(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "hi"}, {"text": "again"}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client = await open_conversation(server.url)
        await say(client, "what is this repo?")
        await say(client, "thanks")
        first, second = [turns_of(r.body) for r in fake_model.requests]
        assert "first conversation in this repository" in first and "what is this repo?" in first
        assert second.count("Learn this repository") == 1  # the first note only, not again
        await client.close()

"""Agent files over REST on a real server: an imported Letta history (tool calls answered and
unanswered, send_message replies) is continued with the real SDKs against the fakes, which
reject what the providers reject; the routes refuse a too-large body and a bad file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, UserMessage, Welcome
from support.servers import TEST_TOKEN, cairn_server, script, sqlite_url
from support.wire import WORKSPACE, WireClient

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
QUERY = {**WORKSPACE.model_dump(exclude={"moved_from"}, exclude_none=True)}


def call(call_id: str, name: str, **arguments: str) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": call_id, "type": "function", "function": function}


HISTORY = [
    {"role": "system", "content": [{"type": "text", "text": "compiled"}]},
    {"role": "user", "content": json.dumps({"type": "user_message", "message": "Find x"})},
    {"role": "assistant", "content": "thinking", "tool_calls": [call("a1", "web_search", q="x")]},
    {"role": "tool", "tool_call_id": "a1", "content": "x is 42"},
    {"role": "assistant", "tool_calls": [call("a2", "web_search", q="y")]},  # never answered
    {"role": "assistant", "tool_calls": [call("s1", "send_message", message="x is 42.")]},
    {"role": "tool", "tool_call_id": "s1", "content": "None"},
    {"role": "tool", "tool_call_id": "zz", "content": "a result nobody asked for"},
]
AGENT_FILE = {
    "agents": [{"name": "finder", "system": "Be brief.", "block_ids": [], "messages": HISTORY}],
    "blocks": [],
}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_an_imported_history_is_continued_by_the_real_sdks(
    tmp_path: Path, fake_model: FakeModelServer, provider: str
) -> None:
    fake_model.set_script(script({"text": "Still 42."}))
    with cairn_server(sqlite_url(tmp_path), fake_model, provider) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as api:
            answer = await api.post(
                "/v1/agents/import", params=QUERY, content=json.dumps(AGENT_FILE)
            )
            assert answer.status_code == 201, answer.text
            conversation = answer.json()["conversation_id"]
        client = await WireClient.connect(server.url)
        welcome = await client.hello(conversation=conversation)
        assert isinstance(welcome, Welcome), welcome
        await client.send(UserMessage(text="And y?"))
        finished = await client.recv_until(RunFinished, timeout=60)
        await client.close()
    assert finished.stop_reason == "end_turn", finished
    sent = json.dumps(fake_model.requests[-1].body)
    assert "x is 42" in sent and "x is 42." in sent and "Find x" in sent
    assert "No result for this call was recorded" in sent
    i = sent.find("a result nobody")
    assert i < 0, sent[i - 300 : i + 100]


async def test_the_routes_refuse_a_large_body_and_a_bad_file(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60) as api:
            huge = await api.post("/v1/agents/import", params=QUERY, content=b" " * (50 * 2**20))
            bad = await api.post("/v1/agents/import", params=QUERY, content=b"[1, 2]")
            agents = (await api.get("/v1/agents")).json()
    assert huge.status_code == 413 and "50.0 MiB" in huge.json()["detail"]
    assert bad.status_code == 422 and "not an agent file" in bad.json()["detail"]
    assert agents == []

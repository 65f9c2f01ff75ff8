"""Reflection through the real server: the idle watch it starts, and POST /reflect's refusal
while the agent has one running (over HTTP and the websocket, the fake behind the SDK)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, UserMessage, Welcome
from support.servers import TEST_TOKEN, cairn_server, call, script, sqlite_url
from support.waiting import scaled, until
from support.wire import WireClient

HEADERS = {"Authorization": f"Bearer {TEST_TOKEN}"}


async def one_exchange(url: str, text: str) -> Welcome:
    client = await WireClient.connect(url)
    welcome = await client.hello()
    assert isinstance(welcome, Welcome)
    await client.send(UserMessage(text=text))
    finished = await client.recv_until(RunFinished, timeout=scaled(20))
    assert finished.stop_reason == "end_turn"
    await client.close()
    return welcome


async def get(url: str, path: str) -> Any:
    async with httpx.AsyncClient(base_url=url, headers=HEADERS) as http:
        response = await http.get(path)
        response.raise_for_status()
        return response.json()


async def test_the_server_reflects_on_an_idle_conversation_by_itself(
    tmp_path: Path, fake: FakeModelServer
) -> None:
    fake.set_script(
        script(
            {"text": "Noted."},
            {"tool_calls": [call("memory_insert", label="project", text="- Lint: ruff")]},
        )
    )
    env = {"CAIRN_REFLECTION_IDLE_S": "0.3"}
    with cairn_server(sqlite_url(tmp_path), fake, env=env) as server:
        welcome = await one_exchange(server.url, "We lint with ruff.")
        path = f"/v1/conversations/{welcome.conversation_id}/reflections"
        reflections: list[dict[str, Any]] = []

        async def looked() -> bool:
            reflections[:] = await get(server.url, path)
            return bool(reflections) and reflections[0]["status"] != "running"

        deadline = asyncio.get_running_loop().time() + scaled(20)
        while not await looked():
            assert asyncio.get_running_loop().time() < deadline, "no idle reflection in time"
            await asyncio.sleep(0.05)
        block = await get(server.url, f"/v1/agents/{welcome.agent_id}/blocks/project")
    assert len(reflections) == 1, [
        (r["status"], r["through_message"], r["messages_read"], r["detail"], r["created_at"])
        for r in reflections
    ]
    (reflection,) = reflections
    assert (reflection["trigger"], reflection["status"]) == ("idle", "finished")
    assert reflection["edits"] == [
        {"label": "project", "tool": "memory_insert", "version": 2, "reason": None}
    ]
    assert block["value"] == "- Lint: ruff"


async def test_reflect_is_refused_while_the_agent_reflects_already(
    tmp_path: Path, fake: FakeModelServer
) -> None:
    fake.set_script(script({"text": "Noted."}, {"delay_s": scaled(3), "text": "no changes"}))
    with cairn_server(sqlite_url(tmp_path), fake, env={"CAIRN_REFLECTION_IDLE_S": "0"}) as server:
        welcome = await one_exchange(server.url, "hello")
        path = f"/v1/conversations/{welcome.conversation_id}/reflect"
        async with httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=60) as http:
            first = asyncio.create_task(http.post(path))
            await until(None, lambda: len(fake.requests) == 2)
            second = await http.post(path)
            assert second.status_code == 409
            assert "already running" in second.json()["detail"]
            done = await first
    assert done.status_code == 200 and done.json()["status"] == "finished"

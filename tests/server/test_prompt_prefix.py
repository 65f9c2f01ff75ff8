"""The prompt prefix across server processes: nothing in it changes between them.

Two servers started one after the other on the same database (as a restarted `cairn` does):
a new conversation's first request carries the system prompt and tools of the previous
process's byte for byte, and a continued conversation's first request starts with the whole
request the previous process sent last.
"""

from __future__ import annotations

import json
from typing import Any

from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, ToolRequest, ToolResult, UserMessage
from support.servers import cairn_server, call, script
from support.wire import connected


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


async def one_turn(url: str, conversation: str, text: str) -> str:
    """Send `text` in `conversation`, answer its tool requests, wait for the end; the id."""
    client, welcome = await connected(url, conversation=conversation)
    try:
        await client.send(UserMessage(text=text))
        while True:
            frame = await client.recv()
            if isinstance(frame, ToolRequest):
                await client.send(ToolResult(call_id=frame.call_id, status="ok", content="x = 1"))
            elif isinstance(frame, RunFinished):
                assert frame.stop_reason == "end_turn", frame.detail
                return welcome.conversation_id
    finally:
        await client.close()


async def test_a_restarted_server_sends_the_prefix_it_sent_before(
    database_url: str, fake: FakeModelServer
) -> None:
    fake.set_script(
        script(
            {"text": "Reading.", "tool_calls": [call("read", path="app.py")]},
            {"text": "It sets x."},
            {"text": "Still x."},
            {"text": "Hello again."},
        )
    )
    with cairn_server(database_url, fake) as server:
        conversation = await one_turn(server.url, "new", "What does app.py do?")
    before = [request.body for request in fake.requests]

    with cairn_server(database_url, fake) as server:  # a new process on the same database
        await one_turn(server.url, conversation, "And now?")
        await one_turn(server.url, "new", "Hello")
    continued, fresh = (request.body for request in fake.requests[len(before) :])

    first, last = before[0], before[-1]
    assert canonical(fresh["tools"]) == canonical(first["tools"])
    assert fresh["messages"][0]["role"] == "system"
    assert canonical(fresh["messages"][0]) == canonical(first["messages"][0])
    assert continued["tools"] == last["tools"]
    assert continued["messages"][: len(last["messages"])] == last["messages"]
    assert [m["content"] for m in fresh["messages"][1:]] == ["Hello"]

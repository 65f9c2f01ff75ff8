"""Streamed chunks from OpenAI-compatible servers that bend the schema, replayed on loopback
to the real OpenAI adapter: what they say is read, what is malformed is left out, and the
answer still ends as it should."""

from __future__ import annotations

import json

from cairn_server.domain import ModelMessage, ModelRequest
from cairn_server.providers.base import Completed, TextDelta, ToolCallReady
from cairn_server.providers.openai_provider import OpenAIProvider
from cairn_server.providers.retry import RetryPolicy
from support.servers import replaying_server


def sse(*chunks: object) -> bytes:
    lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def delta(**fields: object) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


async def answer(body: bytes) -> list[object]:
    with replaying_server(200, body, "text/event-stream") as url:
        provider = OpenAIProvider(
            "local", api_key="unused", base_url=url, retry=RetryPolicy(max_retries=0)
        )
        async with provider:
            request = ModelRequest(system="", messages=[ModelMessage("user", "hi")])
            return [event async for event in provider.stream(request)]


async def test_malformed_fields_are_left_out_and_the_rest_is_read() -> None:
    events = await answer(
        sse(
            {"choices": None},  # a keep-alive some servers send
            delta(content="Reading "),
            delta(content=5),  # not text: ignored
            "not an object",
            {"choices": [{"delta": None, "finish_reason": None}, "junk"]},
            delta(content="it."),
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": None}},
        )
    )
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Reading it."
    [done] = [e for e in events if isinstance(e, Completed)]
    assert done.stop_reason == "end_turn"
    assert (done.usage.input_tokens, done.usage.output_tokens) == (12, 0)


async def test_tool_calls_without_an_index_are_told_apart_by_their_ids() -> None:
    events = await answer(
        sse(
            delta(tool_calls=[{"id": "call_a", "function": {"name": "read", "arguments": ""}}]),
            delta(tool_calls=[{"function": {"arguments": '{"path": "a.py"}'}}]),
            delta(tool_calls=[{"id": "call_b", "function": {"name": "read", "arguments": "{"}}]),
            delta(tool_calls=[{"function": {"arguments": '"path": "b.py"}', "name": 7}}]),
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        )
    )
    calls = [e.call for e in events if isinstance(e, ToolCallReady)]
    assert [(c.id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_a", "read", {"path": "a.py"}),
        ("call_b", "read", {"path": "b.py"}),
    ]
    [done] = [e for e in events if isinstance(e, Completed)]
    assert done.stop_reason == "tool_use"

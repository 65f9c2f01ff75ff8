"""Histories a provider accepts, whatever a cancel, a dead run or a late result left stored:
every call answered right after it, a stray result kept as a note, no empty turn. Sent to
the fakes, which answer 400 to a malformed history as the real APIs do."""

from __future__ import annotations

import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import CLIENT_TOOLS
from cairn_server.context.compiler import AgentContext, compile_context
from cairn_server.context.memory_view import MemorySections
from cairn_server.context.wellformed import NO_RESULT, problems, well_formed
from cairn_server.domain import ModelMessage, ModelRequest, ToolCall
from cairn_server.providers.anthropic_provider import AnthropicProvider
from cairn_server.providers.base import Completed, Provider, ProviderError, TextDelta
from cairn_server.providers.openai_provider import OpenAIProvider
from cairn_server.providers.retry import RetryPolicy
from cairn_server.tools.registry import TOOLS
from support.servers import script

READ_A = ToolCall("call_a", "read", '{"path": "a.py"}')
READ_B = ToolCall("call_b", "read", '{"path": "b.py"}')

# As stored after a run was cancelled while b.py was being read, a new message started
# another run (whose first answer was cut before any text), and then b.py's result came late.
LEFT_BROKEN = [
    ModelMessage("user", "read a.py and b.py"),
    ModelMessage("assistant", "", tool_calls=(READ_A, READ_B)),
    ModelMessage("tool", "print('a')", tool_call_id="call_a"),
    ModelMessage("user", "never mind: what is 2 + 2?"),
    ModelMessage("assistant", ""),
    ModelMessage("assistant", "4"),
    ModelMessage("tool", "print('b')", tool_call_id="call_b"),
    ModelMessage("tool", "an old result", tool_call_id="call_compacted_away"),
    ModelMessage("user", "thanks"),
]


def test_a_broken_history_is_shaped_as_providers_require() -> None:
    assert problems(LEFT_BROKEN)
    shaped = well_formed(LEFT_BROKEN)
    assert problems(shaped) == []
    assert [(m.role, m.tool_call_id) for m in shaped[:4]] == [
        ("user", None),
        ("assistant", None),
        ("tool", "call_a"),
        ("tool", "call_b"),
    ]
    assert shaped[3].content == "print('b')", "the late result is moved up to its call"
    assert [m.content for m in shaped if m.role == "assistant"] == ["", "4"]
    [stray] = [m for m in shaped if "an old result" in m.content]
    assert stray.role == "user" and stray.note and "call_compacted_away" in stray.content
    assert well_formed(shaped) == shaped


def test_a_call_never_answered_gets_an_honest_result() -> None:
    shaped = well_formed(LEFT_BROKEN[:2] + [ModelMessage("user", "hello?")])
    assert [(m.role, m.content) for m in shaped[1:4]] == [
        ("assistant", ""),
        ("tool", NO_RESULT),
        ("tool", NO_RESULT),
    ]
    assert all(m.is_error for m in shaped[2:4]) and problems(shaped) == []


def test_a_well_formed_history_is_sent_as_it_is() -> None:
    history = [LEFT_BROKEN[0], LEFT_BROKEN[1], LEFT_BROKEN[2], LEFT_BROKEN[6], LEFT_BROKEN[8]]
    assert problems(history) == [] and well_formed(history) == history


def providers(fake: FakeModelServer) -> list[Provider]:
    retry = RetryPolicy(max_retries=0)
    return [
        OpenAIProvider("gpt-4o-mini", api_key="k", base_url=fake.openai_base_url, retry=retry),
        AnthropicProvider(
            "claude-sonnet-4-6", api_key="k", base_url=fake.anthropic_base_url, retry=retry
        ),
    ]


async def answer(provider: Provider, request: ModelRequest) -> str:
    try:
        events = [event async for event in provider.stream(request)]
    finally:
        await provider.aclose()
    assert isinstance(events[-1], Completed)
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize("index", [0, 1], ids=["openai", "anthropic"])
async def test_the_apis_refuse_the_stored_history_and_accept_the_compiled_request(
    fake_model: FakeModelServer, index: int
) -> None:
    fake_model.set_script(script({"text": "You're welcome."}, {"text": "You're welcome."}))
    raw = ModelRequest(system="You are Cairn.", messages=LEFT_BROKEN)
    with pytest.raises(ProviderError):
        await answer(providers(fake_model)[index], raw)
    context = AgentContext("app", TOOLS.specs(CLIENT_TOOLS))
    compiled = compile_context(context, MemorySections("", ""), LEFT_BROKEN)
    assert await answer(providers(fake_model)[index], compiled.request) == "You're welcome."

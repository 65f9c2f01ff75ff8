"""The OpenAI and Anthropic providers, through the real SDKs, against the fake model server.

Each provider must stream text and tool calls into the internal events, send a conversation
in its API's own wire shape (asserted on what reached the server), and turn SDK errors into
messages a user can act on. Also: model resolution from the environment, and pricing.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_fakes.script import Script, ScriptedError, ScriptedToolCall, Turn
from cairn_protocol import Usage
from cairn_server.config import ModelSettings
from cairn_server.context.tokens import count_tokens
from cairn_server.domain import ModelMessage, ModelRequest, ToolCall, ToolSpec
from cairn_server.providers.anthropic_provider import AnthropicProvider, ThinkingMemory
from cairn_server.providers.base import (
    Completed,
    Provider,
    ProviderError,
    StreamEvent,
    TextDelta,
    ToolCallReady,
)
from cairn_server.providers.catalog import (
    DEFAULT_ANTHROPIC_MODEL,
    DEFAULT_OPENAI_MODEL,
    make_provider,
    resolve_model,
)
from cairn_server.providers.openai_provider import OpenAIProvider, wire_message
from cairn_server.providers.pricing import cost_usd
from cairn_server.providers.retry import RetryPolicy
from support.providers import ANTHROPIC_MODEL, OPENAI_MODEL, adapters_for

pytestmark = pytest.mark.filterwarnings("error")

NO_RETRIES = RetryPolicy(max_retries=0)
READ_TOOL = ToolSpec(
    name="read",
    description="Read a file.",
    parameters={"type": "object", "properties": {"path": {"type": "string"}}},
)


@pytest.fixture(params=["openai", "anthropic"])
def provider_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


ProviderFactory = Callable[..., Provider]


@pytest.fixture
async def open_provider(fake: FakeModelServer) -> AsyncIterator[ProviderFactory]:
    """Build providers for the fake (no retries unless asked); closed after the test."""
    async with adapters_for(fake) as make:
        yield lambda name, **options: make(name, **{"retry": NO_RETRIES, **options})


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


def ask(text: str, *history: ModelMessage) -> ModelRequest:
    return ModelRequest(
        system="You are Cairn.",
        messages=[*history, ModelMessage(role="user", content=text)],
        tools=[READ_TOOL],
    )


def completed(events: list[StreamEvent]) -> Completed:
    last = events[-1]
    assert isinstance(last, Completed), f"the stream must end with Completed, got {last}"
    return last


# --------------------------------------------------------------------------- streaming


async def test_streamed_text_becomes_deltas_then_completed_with_usage_and_cost(
    fake: FakeModelServer, provider_name: str, open_provider: ProviderFactory
) -> None:
    text = "The tests live in tests/server and run with pytest."
    fake.set_script(Script([Turn(text=text, chunk_size=6, cached_input_tokens=4)]))
    provider = open_provider(provider_name)

    events = await collect(provider.stream(ask("where are the tests?")))

    deltas = [event.text for event in events if isinstance(event, TextDelta)]
    assert len(deltas) > 1 and "".join(deltas) == text
    done = completed(events)
    assert done.stop_reason == "end_turn"
    assert done.usage.output_tokens == count_tokens(text)
    assert done.usage.input_tokens > done.usage.cached_input_tokens == 4
    assert done.usage.cost_usd == pytest.approx(cost_usd(provider.model, done.usage))
    assert done.usage.cost_usd > 0


async def test_tool_call_turn_yields_ready_calls_with_the_exact_arguments(
    fake: FakeModelServer, provider_name: str, open_provider: ProviderFactory
) -> None:
    calls = (
        ScriptedToolCall(name="read", arguments={"path": "src/app.py", "offset": 10}),
        ScriptedToolCall(name="read", arguments={"path": "README.md"}),
    )
    fake.set_script(Script([Turn(text="Reading.", tool_calls=calls, chunk_size=3)]))
    provider = open_provider(provider_name)

    events = await collect(provider.stream(ask("look")))

    ready = [event.call for event in events if isinstance(event, ToolCallReady)]
    assert [(call.name, json.loads(call.arguments)) for call in ready] == [
        ("read", {"path": "src/app.py", "offset": 10}),
        ("read", {"path": "README.md"}),
    ]
    assert len({call.id for call in ready}) == 2 and all(call.id for call in ready)
    assert completed(events).stop_reason == "tool_use"
    first_call = next(i for i, event in enumerate(events) if isinstance(event, ToolCallReady))
    assert all(isinstance(event, TextDelta) for event in events[:first_call])


async def test_malformed_arguments_arrive_verbatim_and_can_be_sent_back(
    fake: FakeModelServer, provider_name: str, open_provider: ProviderFactory
) -> None:
    broken = '{"path": "src/app.py", '
    call = ScriptedToolCall(name="read", raw_arguments=broken)
    fake.set_script(Script([Turn(tool_calls=(call,)), Turn(text="Sorry, retrying.")]))
    provider = open_provider(provider_name)

    events = await collect(provider.stream(ask("read it")))
    [ready] = [event.call for event in events if isinstance(event, ToolCallReady)]
    assert ready.arguments == broken

    error = "Invalid JSON arguments: Expecting property name enclosed in double quotes"
    history = [
        ModelMessage(role="user", content="read it"),
        ModelMessage(role="assistant", tool_calls=(ready,)),
        ModelMessage(role="tool", content=error, tool_call_id=ready.id, is_error=True),
    ]
    request = ModelRequest(system="You are Cairn.", messages=history, tools=[READ_TOOL])
    events = await collect(provider.stream(request))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Sorry, retrying."
    body = json.dumps(fake.requests[-1].body)
    assert "Invalid JSON arguments" in body


# --------------------------------------------------------------------------- wire shapes


def conversation_with_tool_results() -> list[ModelMessage]:
    allowed = ToolCall(id="call_allowed", name="read", arguments='{"path": "a.py"}')
    denied = ToolCall(id="call_denied", name="read", arguments='{"path": ".env"}')
    return [
        ModelMessage(role="user", content="Compare a.py and .env"),
        ModelMessage(role="assistant", content="Reading both.", tool_calls=(allowed, denied)),
        ModelMessage(role="tool", content="print('a')", tool_call_id="call_allowed"),
        ModelMessage(
            role="tool",
            content="denied by the user: never read secrets",
            tool_call_id="call_denied",
            is_error=True,
        ),
    ]


async def test_openai_conversation_uses_tool_messages_with_tool_call_ids(
    fake: FakeModelServer, open_provider: ProviderFactory
) -> None:
    fake.set_script(Script.of_texts("Done."))
    provider = open_provider("openai")
    request = ModelRequest(
        system="You are Cairn.", messages=conversation_with_tool_results(), tools=[READ_TOOL]
    )

    events = await collect(provider.stream(request))

    assert completed(events).stop_reason == "end_turn"
    body = fake.requests[-1].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "read",
                "description": "Read a file.",
                "parameters": READ_TOOL.parameters,
            },
        }
    ]
    system, user, assistant, allowed, denied = body["messages"]
    assert system == {"role": "system", "content": "You are Cairn."}
    assert user == {"role": "user", "content": "Compare a.py and .env"}
    assert assistant["role"] == "assistant" and assistant["content"] == "Reading both."
    assert [(c["id"], c["type"], c["function"]) for c in assistant["tool_calls"]] == [
        ("call_allowed", "function", {"name": "read", "arguments": '{"path": "a.py"}'}),
        ("call_denied", "function", {"name": "read", "arguments": '{"path": ".env"}'}),
    ]
    assert allowed == {"role": "tool", "tool_call_id": "call_allowed", "content": "print('a')"}
    assert denied["role"] == "tool" and denied["tool_call_id"] == "call_denied"
    assert "never read secrets" in denied["content"]


async def test_anthropic_conversation_sends_tool_results_inside_one_user_message(
    fake: FakeModelServer, open_provider: ProviderFactory
) -> None:
    fake.set_script(Script.of_texts("Done."))
    provider = open_provider("anthropic")
    messages = [*conversation_with_tool_results(), ModelMessage(role="user", content="and?")]
    request = ModelRequest(system="You are Cairn.", messages=messages, tools=[READ_TOOL])

    events = await collect(provider.stream(request))

    assert completed(events).stop_reason == "end_turn"
    body = fake.requests[-1].body
    assert body["stream"] is True and body["max_tokens"] == request.max_output_tokens
    assert body["system"] == [
        {"type": "text", "text": "You are Cairn.", "cache_control": {"type": "ephemeral"}}
    ]
    assert body["tools"] == [
        {"name": "read", "description": "Read a file.", "input_schema": READ_TOOL.parameters}
    ]
    user, assistant, results = body["messages"]
    assert user == {"role": "user", "content": [{"type": "text", "text": "Compare a.py and .env"}]}
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Reading both."},
            {"type": "tool_use", "id": "call_allowed", "name": "read", "input": {"path": "a.py"}},
            {"type": "tool_use", "id": "call_denied", "name": "read", "input": {"path": ".env"}},
        ],
    }
    assert results["role"] == "user"
    allowed, denied, follow_up = results["content"]
    assert allowed == {
        "type": "tool_result",
        "tool_use_id": "call_allowed",
        "content": "print('a')",
        "is_error": False,
    }
    assert denied["tool_use_id"] == "call_denied" and denied["is_error"] is True
    assert denied["content"] == "denied by the user: never read secrets"
    # The newest block is the prompt-cache breakpoint for the next call.
    assert follow_up == {"type": "text", "text": "and?", "cache_control": {"type": "ephemeral"}}


async def test_anthropic_thinking_blocks_go_back_verbatim_with_their_tool_calls(
    fake: FakeModelServer, open_provider: ProviderFactory
) -> None:
    thinking = "The user wants a.py; read it first."
    turn = Turn(text="Reading.", thinking=thinking, tool_calls=(ScriptedToolCall(name="read"),))
    fake.set_script(Script([turn, Turn(text="It prints a.")]))
    provider = open_provider("anthropic", thinking_memory=ThinkingMemory())

    events = await collect(provider.stream(ask("what does a.py do?")))
    [call] = [event.call for event in events if isinstance(event, ToolCallReady)]
    history = [
        ModelMessage(role="user", content="what does a.py do?"),
        ModelMessage(role="assistant", content="Reading.", tool_calls=(call,)),
        ModelMessage(role="tool", content="print('a')", tool_call_id=call.id),
    ]
    events = await collect(provider.stream(ModelRequest(system="", messages=history)))

    # The fake rejects a thinking block whose text or signature changed, like the real API.
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "It prints a."
    assistant = fake.requests[-1].body["messages"][1]["content"]
    assert [block["type"] for block in assistant] == ["thinking", "text", "tool_use"]
    assert assistant[0]["thinking"] == thinking
    assert assistant[2]["id"] == call.id


# --------------------------------------------------------------------------- prompt cache


async def test_a_second_call_of_a_conversation_reads_the_prompt_cache(
    fake: FakeModelServer, provider_name: str, open_provider: ProviderFactory
) -> None:
    """OpenAI caches any long shared prefix; Anthropic only up to the cache_control
    breakpoints the provider places (system prompt and newest block)."""
    fake.set_script(Script.of_texts("It prints a.", "It prints b."))
    provider = open_provider(provider_name)
    system = "You are Cairn.\n" + "\n".join(f"Rule {n}: read before you edit." for n in range(150))
    history = [ModelMessage(role="user", content="What does a.py print?")]

    first = completed(await collect(provider.stream(ModelRequest(system, history, [READ_TOOL]))))
    history += [
        ModelMessage(role="assistant", content="It prints a."),
        ModelMessage(role="user", content="And b.py?"),
    ]
    second = completed(await collect(provider.stream(ModelRequest(system, history, [READ_TOOL]))))

    assert first.usage.cached_input_tokens == 0 and first.usage.input_tokens > 1024
    whole_first_prompt = {
        "openai": first.usage.input_tokens // 128 * 128,
        "anthropic": first.usage.input_tokens,
    }
    assert second.usage.cached_input_tokens == whole_first_prompt[provider_name]
    assert second.usage.input_tokens > first.usage.input_tokens


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}),
        (404, {"openai": f"'{OPENAI_MODEL}' was not found", "anthropic": "was not found"}),
        (500, {"openai": "answered 500", "anthropic": "answered 500"}),
        (429, {"openai": "answered 429", "anthropic": "answered 429"}),
    ],
)
async def test_http_errors_become_provider_errors_a_user_can_act_on(
    fake: FakeModelServer,
    provider_name: str,
    open_provider: ProviderFactory,
    status: int,
    expected: dict[str, str],
) -> None:
    message = f"scripted failure {status}"
    fake.set_script(Script([Turn(error=ScriptedError(status=status, message=message))]))
    provider = open_provider(provider_name)

    with pytest.raises(ProviderError) as raised:
        await collect(provider.stream(ask("hi")))

    assert expected[provider_name] in str(raised.value)
    assert message in str(raised.value)


async def test_server_errors_are_retried_by_the_policy(
    fake: FakeModelServer, provider_name: str, open_provider: ProviderFactory
) -> None:
    flaky = ScriptedError(status=503, message="busy", retry_after_ms=1)
    fake.set_script(Script([Turn(error=flaky), Turn(text="recovered")]))
    provider = open_provider(provider_name, retry=RetryPolicy(max_retries=2))

    events = await collect(provider.stream(ask("hi")))

    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "recovered"
    assert len(fake.requests) == 2


def closed_port_url(path: str) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


async def test_unreachable_server_names_the_url(provider_name: str) -> None:
    provider: OpenAIProvider | AnthropicProvider
    if provider_name == "openai":
        url = closed_port_url("/v1")
        provider = OpenAIProvider(OPENAI_MODEL, "k", url, retry=NO_RETRIES)
    else:
        url = closed_port_url("")
        provider = AnthropicProvider(ANTHROPIC_MODEL, "k", url, retry=NO_RETRIES)

    async with provider:
        with pytest.raises(ProviderError, match="Cannot reach") as raised:
            await collect(provider.stream(ask("hi")))

    assert url in str(raised.value)


# --------------------------------------------------------------------------- model resolution


def test_agent_model_wins_over_the_environment() -> None:
    env = {"CAIRN_MODEL": "openai/gpt-4.1", "OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"}
    choice = resolve_model("anthropic/claude-haiku-4-5", ModelSettings.from_env(env))
    assert (choice.model, choice.problem) == ("anthropic/claude-haiku-4-5", None)


def test_cairn_model_is_used_when_the_agent_has_none() -> None:
    choice = resolve_model(
        None, ModelSettings.from_env({"CAIRN_MODEL": "openai/gpt-4.1", "OPENAI_API_KEY": "k"})
    )
    assert (choice.model, choice.problem) == ("openai/gpt-4.1", None)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ANTHROPIC_API_KEY": "k", "OPENAI_API_KEY": "k"}, DEFAULT_ANTHROPIC_MODEL),
        ({"OPENAI_API_KEY": "k"}, DEFAULT_OPENAI_MODEL),
    ],
)
def test_default_model_follows_the_key_that_is_set(env: dict[str, str], expected: str) -> None:
    settings = ModelSettings.from_env(env)
    assert resolve_model(None, settings) == resolve_model("", settings)
    choice = resolve_model(None, settings)
    assert (choice.model, choice.problem) == (expected, None)


def test_no_model_explains_how_to_configure_one() -> None:
    choice = resolve_model(None, ModelSettings())
    assert choice.model is None and choice.problem is not None
    for hint in ("CAIRN_MODEL=openai/", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY"):
        assert hint in choice.problem
    assert "cairn demo" in choice.problem


@pytest.mark.parametrize(
    ("spec", "variable"),
    [("openai/gpt-4.1", "OPENAI_API_KEY"), ("anthropic/claude-haiku-4-5", "ANTHROPIC_API_KEY")],
)
def test_missing_key_names_the_variable(spec: str, variable: str) -> None:
    choice = resolve_model(spec, ModelSettings())
    assert choice.problem is not None and f"needs {variable}" in choice.problem
    with pytest.raises(ProviderError, match=variable):
        make_provider(spec, ModelSettings())


def test_unknown_prefix_names_the_valid_ones() -> None:
    choice = resolve_model("gpt-4.1", ModelSettings.from_env({"OPENAI_API_KEY": "k"}))
    assert choice.problem is not None
    assert '"openai/<model>"' in choice.problem and '"anthropic/<model>"' in choice.problem


def test_openai_compatible_server_needs_no_key() -> None:
    env = {"CAIRN_MODEL": "openai/llama3.2", "OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}
    assert resolve_model(None, ModelSettings.from_env(env)).problem is None


async def test_make_provider_reads_keys_and_base_urls_from_the_environment(
    fake: FakeModelServer,
) -> None:
    fake.set_script(Script.of_texts("via openai", "via anthropic"))
    env = {
        "OPENAI_API_KEY": "sk-env",
        "OPENAI_BASE_URL": fake.openai_base_url,
        "ANTHROPIC_API_KEY": "sk-ant-env",
        "ANTHROPIC_BASE_URL": fake.anthropic_base_url,
    }
    for spec in ("openai/gpt-5.4-mini", "anthropic/claude-sonnet-4-6"):
        provider = make_provider(spec, ModelSettings.from_env(env))
        assert isinstance(provider, OpenAIProvider | AnthropicProvider)
        async with provider:
            assert provider.model == spec.partition("/")[2]
            await collect(provider.stream(ask("hi")))
    openai_request, anthropic_request = fake.requests
    assert openai_request.headers["authorization"] == "Bearer sk-env"
    assert openai_request.body["model"] == "gpt-5.4-mini"
    assert "sk-ant-env" in str(anthropic_request.headers)
    assert anthropic_request.body["model"] == "claude-sonnet-4-6"


# --------------------------------------------------------------------------- pricing


def test_cost_charges_cached_input_at_the_cached_price() -> None:
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=100_000)
    # gpt-5.4-mini: $0.75 input, $0.075 cached input, $4.50 output per million tokens.
    assert cost_usd("gpt-5.4-mini", usage) == pytest.approx(0.6 * 0.75 + 0.4 * 0.075 + 0.45)
    assert cost_usd("openai/gpt-5.4-mini", usage) == cost_usd("gpt-5.4-mini", usage)


def test_dated_snapshots_cost_what_their_family_costs_and_unknown_models_cost_nothing() -> None:
    usage = Usage(input_tokens=1000, output_tokens=1000)
    assert cost_usd("claude-sonnet-4-5-20250929", usage) == cost_usd("claude-sonnet-4-5", usage)
    assert cost_usd("gpt-4o-mini-2024-07-18", usage) == cost_usd("gpt-4o-mini", usage) > 0
    assert cost_usd("gpt-5.4-pro", usage) == 0.0
    assert cost_usd("llama3.2", usage) == 0.0


def test_a_tool_error_reads_error_once_on_the_chat_completions_wire() -> None:
    told = ModelMessage("tool", "Error: no such file", tool_call_id="c1", is_error=True)
    bare = ModelMessage("tool", "the command failed", tool_call_id="c2", is_error=True)
    expected = {"role": "tool", "tool_call_id": "c1", "content": "Error: no such file"}
    assert wire_message(told) == expected
    assert wire_message(bare)["content"] == "Error: the command failed"

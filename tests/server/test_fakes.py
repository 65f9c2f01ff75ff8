"""The fake model server, checked with the real openai and anthropic SDKs on loopback.

If the official SDKs accept what the fake sends (plain and streamed, without warnings), the
provider tests and every test built on the fake exercise the real wire protocols.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from anthropic.types import MessageParam, TextBlockParam
from cairn_fakes.runner import FakeModelServer
from cairn_fakes.script import (
    NO_MORE_TURNS_TEXT,
    Script,
    ScriptedError,
    ScriptedToolCall,
    ScriptError,
    Turn,
)
from cairn_server.context.tokens import count_tokens
from openai.types.chat import ChatCompletionMessageParam
from openai.types.completion_usage import CompletionUsage

pytestmark = pytest.mark.filterwarnings("error")

OPENAI_MODEL = "gpt-5.4-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-6"
OPENAI_HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
ANTHROPIC_HELLO: list[MessageParam] = [{"role": "user", "content": "hello"}]
# Well over the 1024 tokens both APIs need before they cache a prefix.
LONG_SYSTEM = "You are Cairn, a careful coding agent.\n" + "\n".join(
    f"Rule {number}: read a file before editing it, and keep the workspace tidy."
    for number in range(120)
)


def openai_client(fake: FakeModelServer, max_retries: int = 0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-test", base_url=fake.openai_base_url, max_retries=max_retries
    )


def anthropic_client(fake: FakeModelServer, max_retries: int = 0) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="sk-ant-test", base_url=fake.anthropic_base_url, max_retries=max_retries
    )


def read_call(path: str) -> ScriptedToolCall:
    return ScriptedToolCall(name="read", arguments={"path": path})


# --------------------------------------------------------------------------- OpenAI


async def test_openai_streamed_text_arrives_in_chunks_with_usage(fake: FakeModelServer) -> None:
    text = "The answer is in src/app.py, line 12."
    fake.set_script(Script([Turn(text=text, chunk_size=5)]))
    async with openai_client(fake) as client:
        stream = await client.chat.completions.create(
            model=OPENAI_MODEL,
            messages=[{"role": "user", "content": "where?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == text
    assert len(pieces) == len(text) // 5 + 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None and chunks[-1].choices == []
    assert usage.completion_tokens == count_tokens(text)
    assert usage.prompt_tokens > 0


async def test_openai_streamed_tool_calls_carry_index_id_name_then_arguments(
    fake: FakeModelServer,
) -> None:
    fake.set_script(
        Script([Turn(text="Reading both.", tool_calls=(read_call("a.py"), read_call("b.py")))])
    )
    async with openai_client(fake) as client:
        stream = await client.chat.completions.create(
            model=OPENAI_MODEL, messages=OPENAI_HELLO, stream=True
        )
        chunks = [chunk async for chunk in stream]
    ids: dict[int, str] = {}
    arguments: dict[int, str] = {}
    for chunk in chunks:
        for call in chunk.choices[0].delta.tool_calls or []:
            if call.id:
                ids[call.index] = call.id
                assert call.function is not None and call.function.name == "read"
            fragment = call.function.arguments if call.function else None
            arguments[call.index] = arguments.get(call.index, "") + (fragment or "")
    assert len(set(ids.values())) == 2
    assert [json.loads(arguments[i]) for i in (0, 1)] == [{"path": "a.py"}, {"path": "b.py"}]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is None  # no usage chunk unless include_usage was asked for


async def test_openai_plain_response_has_message_tool_calls_and_usage(
    fake: FakeModelServer,
) -> None:
    fake.set_script(Script([Turn(text="plain answer"), Turn(tool_calls=(read_call("c.py"),))]))
    async with openai_client(fake) as client:
        first = await client.chat.completions.create(model=OPENAI_MODEL, messages=OPENAI_HELLO)
        second = await client.chat.completions.create(model=OPENAI_MODEL, messages=OPENAI_HELLO)
    assert first.choices[0].message.content == "plain answer"
    assert first.choices[0].finish_reason == "stop"
    assert first.usage is not None and first.usage.completion_tokens == count_tokens("plain answer")
    calls = second.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].function.name == "read"
    assert json.loads(calls[0].function.arguments) == {"path": "c.py"}
    assert second.choices[0].finish_reason == "tool_calls"


async def test_openai_raw_arguments_are_sent_verbatim(fake: FakeModelServer) -> None:
    broken = '{"path": "a.py"'
    call = ScriptedToolCall(name="read", raw_arguments=broken)
    fake.set_script(Script([Turn(tool_calls=(call,))]))
    async with openai_client(fake) as client:
        stream = await client.chat.completions.create(
            model=OPENAI_MODEL, messages=OPENAI_HELLO, stream=True
        )
        fragments = [
            tool_call.function.arguments or ""
            async for chunk in stream
            for tool_call in (chunk.choices[0].delta.tool_calls or [] if chunk.choices else [])
            if tool_call.function
        ]
    assert "".join(fragments) == broken


async def test_openai_scripted_error_uses_the_openai_error_format(fake: FakeModelServer) -> None:
    fake.set_script(Script([Turn(error=ScriptedError(status=401, message="Incorrect API key"))]))
    async with openai_client(fake) as client:
        with pytest.raises(openai.AuthenticationError) as raised:
            await client.chat.completions.create(
                model=OPENAI_MODEL, messages=OPENAI_HELLO, stream=True
            )
    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
    assert "Incorrect API key" in raised.value.message


async def test_openai_request_with_an_unanswered_tool_call_is_rejected_like_the_real_api(
    fake: FakeModelServer,
) -> None:
    fake.set_script(Script.of_texts("never sent"))
    messages = [
        {"role": "user", "content": "read it"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "read", "arguments": "{}"},
                }
            ],
        },
        {"role": "user", "content": "well?"},
    ]
    async with openai_client(fake) as client:
        with pytest.raises(openai.BadRequestError, match="call_1"):
            await client.chat.completions.create(model=OPENAI_MODEL, messages=messages)  # type: ignore[arg-type]
    assert fake.script.consumed == 0  # a rejected request does not use up a turn


# --------------------------------------------------------------------------- Anthropic


async def test_anthropic_stream_is_assembled_by_the_sdk_into_the_scripted_message(
    fake: FakeModelServer,
) -> None:
    fake.set_script(
        Script([Turn(text="Let me look.", tool_calls=(read_call("a.py"), read_call("b.py")))])
    )
    async with (
        anthropic_client(fake) as client,
        client.messages.stream(
            model=ANTHROPIC_MODEL, max_tokens=100, messages=ANTHROPIC_HELLO
        ) as stream,
    ):
        texts = [text async for text in stream.text_stream]
        message = await stream.get_final_message()
    assert "".join(texts) == "Let me look." and len(texts) > 1
    assert message.stop_reason == "tool_use"
    text_block, *tool_blocks = message.content
    assert text_block.type == "text" and text_block.text == "Let me look."
    assert [(b.type, getattr(b, "input", None)) for b in tool_blocks] == [
        ("tool_use", {"path": "a.py"}),
        ("tool_use", {"path": "b.py"}),
    ]
    assert len({getattr(b, "id", None) for b in tool_blocks}) == 2
    assert message.usage.output_tokens > count_tokens("Let me look.")  # tool calls count too
    assert message.usage.input_tokens > 0


async def test_anthropic_raw_stream_events_come_in_the_documented_order(
    fake: FakeModelServer,
) -> None:
    fake.set_script(Script([Turn(text="hi", tool_calls=(read_call("a.py"),))]))
    async with anthropic_client(fake) as client:
        stream = await client.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=100, messages=ANTHROPIC_HELLO, stream=True
        )
        kinds = [event.type async for event in stream]
    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


async def test_anthropic_plain_message_and_cached_tokens(fake: FakeModelServer) -> None:
    fake.set_script(Script([Turn(text="plain", cached_input_tokens=3)]))
    async with anthropic_client(fake) as client:
        message = await client.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=100, messages=ANTHROPIC_HELLO
        )
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "plain")]
    assert message.stop_reason == "end_turn"
    assert message.usage.cache_read_input_tokens == 3


async def test_anthropic_scripted_error_uses_the_anthropic_error_format(
    fake: FakeModelServer,
) -> None:
    fake.set_script(Script([Turn(error=ScriptedError(status=404, message="model: nope"))]))
    async with anthropic_client(fake) as client:
        with pytest.raises(anthropic.NotFoundError) as raised:
            await client.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=100, messages=ANTHROPIC_HELLO, stream=True
            )
    assert raised.value.type == "not_found_error"
    assert raised.value.api_message == "model: nope"
    assert raised.value.request_id is not None


async def test_sdk_retries_consume_one_turn_per_attempt(fake: FakeModelServer) -> None:
    overloaded = ScriptedError(status=529, message="Overloaded", retry_after_ms=1)
    fake.set_script(Script([Turn(error=overloaded), Turn(text="second try")]))
    async with anthropic_client(fake, max_retries=1) as client:
        message = await client.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=100, messages=ANTHROPIC_HELLO
        )
    assert [getattr(b, "text", None) for b in message.content] == ["second try"]
    assert len(fake.requests) == 2


async def test_anthropic_tool_result_without_its_tool_use_is_rejected(
    fake: FakeModelServer,
) -> None:
    fake.set_script(Script.of_texts("never sent"))
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "ok"}],
        },
    ]
    async with anthropic_client(fake) as client:
        with pytest.raises(anthropic.BadRequestError, match="toolu_x"):
            await client.messages.create(model=ANTHROPIC_MODEL, max_tokens=10, messages=messages)  # type: ignore[arg-type]


# ---------------------------------------------------------------- token counts and caches


@pytest.fixture
def windowed(fake: FakeModelServer) -> Iterator[FakeModelServer]:
    """The fake with a 100-token context window, unlimited again afterwards."""
    fake.context_window = 100
    yield fake
    fake.context_window = None


def cached_tokens(usage: CompletionUsage | None) -> int:
    assert usage is not None and usage.prompt_tokens_details is not None
    return usage.prompt_tokens_details.cached_tokens or 0


def test_the_long_system_prompt_is_long_enough_to_be_cached() -> None:
    assert count_tokens(LONG_SYSTEM) > 1500


async def test_prompt_tokens_come_from_the_tokenizer(fake: FakeModelServer) -> None:
    text = "Where is the retry policy defined, and what does it retry? " * 20
    fake.set_script(Script.of_texts("a", "b"))
    async with openai_client(fake) as oai, anthropic_client(fake) as ant:
        first = await oai.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": text}]
        )
        second = await ant.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=9, messages=[{"role": "user", "content": text}]
        )
    assert first.usage is not None
    # The text's own tokens plus a few for the chat template's role markers.
    assert 0 < first.usage.prompt_tokens - count_tokens(text) <= 6
    assert 0 < second.usage.input_tokens - count_tokens(text) <= 6


async def test_openai_caches_a_shared_prefix_of_1024_tokens_or_more(
    fake: FakeModelServer,
) -> None:
    fake.set_script(Script.of_texts("first", "second", "third"))
    opening: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": LONG_SYSTEM},
        {"role": "user", "content": "What does app.py do?"},
    ]
    follow_up: list[ChatCompletionMessageParam] = [
        *opening,
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "And tests.py?"},
    ]
    async with openai_client(fake) as client:
        first = await client.chat.completions.create(model=OPENAI_MODEL, messages=opening)
        second = await client.chat.completions.create(model=OPENAI_MODEL, messages=follow_up)
        other_model = await client.chat.completions.create(model="gpt-4.1", messages=follow_up)
    assert first.usage is not None and second.usage is not None
    assert cached_tokens(first.usage) == 0
    # The whole first prompt is the shared prefix, counted in steps of 128 tokens.
    assert cached_tokens(second.usage) == first.usage.prompt_tokens // 128 * 128 >= 1024
    assert second.usage.prompt_tokens > first.usage.prompt_tokens
    assert cached_tokens(other_model.usage) == 0  # caches are per model


async def test_openai_does_not_cache_prefixes_under_1024_tokens(fake: FakeModelServer) -> None:
    fake.set_script(Script.of_texts("a", "b"))
    short_system: ChatCompletionMessageParam = {"role": "system", "content": "You are Cairn."}
    async with openai_client(fake) as client:
        for question in ("one?", "two?"):
            answer = await client.chat.completions.create(
                model=OPENAI_MODEL,
                messages=[short_system, {"role": "user", "content": question}],
            )
            assert cached_tokens(answer.usage) == 0


async def test_a_new_script_starts_with_empty_caches_unless_kept(fake: FakeModelServer) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": LONG_SYSTEM},
        {"role": "user", "content": "hi"},
    ]
    cached: list[int] = []
    async with openai_client(fake) as client:
        for keep_cache in (False, False, True):
            fake.set_script(Script.of_texts("again"), keep_cache=keep_cache)
            answer = await client.chat.completions.create(model=OPENAI_MODEL, messages=messages)
            cached.append(cached_tokens(answer.usage))
    assert cached[0] == cached[1] == 0 and cached[2] >= 1024


def cached_system() -> list[TextBlockParam]:
    return [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]


def cache_use(message: anthropic.types.Message) -> tuple[int, int, int]:
    """(read from cache, written to cache, neither) prompt tokens of an answer."""
    usage = message.usage
    read, written = usage.cache_read_input_tokens or 0, usage.cache_creation_input_tokens or 0
    return read, written, usage.input_tokens


async def test_anthropic_caches_only_up_to_cache_control_breakpoints(
    fake: FakeModelServer,
) -> None:
    fake.set_script(Script.of_texts("a", "b", "c", "d"))
    question: list[MessageParam] = [{"role": "user", "content": "What does app.py do?"}]
    async with anthropic_client(fake) as client:
        answers = [
            await client.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=9, system=system, messages=question
            )
            for system in (LONG_SYSTEM, LONG_SYSTEM, cached_system(), cached_system())
        ]
    plain, plain_again, marked, marked_again = (cache_use(answer) for answer in answers)
    total = plain[2]
    # No breakpoint: nothing is cached, however often the same prompt is sent.
    assert plain == plain_again == (0, 0, total)
    # A breakpoint after the system prompt: written once, then read; the question after
    # the breakpoint is never cached.
    _, system_tokens, question_tokens = marked
    assert system_tokens > 1024 and system_tokens + question_tokens == total
    assert marked == (0, system_tokens, question_tokens)
    assert marked_again == (system_tokens, 0, question_tokens)


async def test_anthropic_reads_an_earlier_breakpoint_found_looking_back_from_a_later_one(
    fake: FakeModelServer,
) -> None:
    fake.set_script(Script.of_texts("a", "b"))
    marked_system: TextBlockParam = {
        "type": "text",
        "text": LONG_SYSTEM,
        "cache_control": {"type": "ephemeral"},
    }
    marked_more: TextBlockParam = {
        "type": "text",
        "text": "more",
        "cache_control": {"type": "ephemeral"},
    }
    opening: list[MessageParam] = [{"role": "user", "content": [marked_system]}]
    follow_up: list[MessageParam] = [
        {"role": "user", "content": [{"type": "text", "text": LONG_SYSTEM}]},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": [marked_more]},
    ]
    async with anthropic_client(fake) as client:
        first, second = [
            cache_use(
                await client.messages.create(model=ANTHROPIC_MODEL, max_tokens=9, messages=messages)
            )
            for messages in (opening, follow_up)
        ]
    _, written, _ = first
    assert first == (0, written, 0) and written > 1024
    # The opening's breakpoint moved on, but its prefix is still found and read.
    read, written_now, uncached = second
    assert (read, uncached) == (written, 0) and written_now > 0


async def test_anthropic_does_not_cache_a_breakpoint_prefix_under_1024_tokens(
    fake: FakeModelServer,
) -> None:
    fake.set_script(Script.of_texts("a", "b"))
    system: list[TextBlockParam] = [
        {"type": "text", "text": "You are Cairn.", "cache_control": {"type": "ephemeral"}}
    ]
    async with anthropic_client(fake) as client:
        for _ in range(2):
            answer = await client.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=9, system=system, messages=ANTHROPIC_HELLO
            )
            assert answer.usage.cache_read_input_tokens == 0
            assert answer.usage.cache_creation_input_tokens == 0


async def test_openai_overflow_is_the_real_400_context_length_exceeded(
    windowed: FakeModelServer,
) -> None:
    windowed.set_script(Script.of_texts("fits"))
    long_question: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Explain every file. " * 60}
    ]
    async with openai_client(windowed) as client:
        with pytest.raises(openai.BadRequestError) as raised:
            await client.chat.completions.create(
                model=OPENAI_MODEL, messages=long_question, stream=True
            )
        assert windowed.script.consumed == 0  # rejected before any answer
        fits = await client.chat.completions.create(model=OPENAI_MODEL, messages=OPENAI_HELLO)
    error = raised.value
    assert (error.status_code, error.code, error.type, error.param) == (
        400,
        "context_length_exceeded",
        "invalid_request_error",
        "messages",
    )
    pattern = (
        r"This model's maximum context length is 100 tokens\. However, your messages "
        r"resulted in (\d+) tokens\. Please reduce the length of the messages\."
    )
    assert isinstance(error.body, dict)
    match = re.fullmatch(pattern, error.body["message"])
    assert match is not None and int(match.group(1)) > 100
    assert error.response.headers["x-request-id"].startswith("req_")
    assert fits.choices[0].message.content == "fits"


async def test_anthropic_overflow_is_the_real_prompt_is_too_long(
    windowed: FakeModelServer,
) -> None:
    windowed.set_script(Script.of_texts("never sent"))
    long_question: list[MessageParam] = [{"role": "user", "content": "Explain every file. " * 60}]
    async with anthropic_client(windowed) as client:
        with pytest.raises(anthropic.BadRequestError) as raised:
            await client.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=9, messages=long_question
            )
    error = raised.value
    assert error.type == "invalid_request_error"
    assert error.api_message is not None
    match = re.fullmatch(r"prompt is too long: (\d+) tokens > 100 maximum", error.api_message)
    assert match is not None and int(match.group(1)) > 100
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert isinstance(error.body, dict) and error.body["request_id"] == error.request_id
    assert windowed.script.consumed == 0


# --------------------------------------------------------------------------- faults


CUT_SHORT = Turn(text="a long answer cut short", chunk_size=4, fault="drop_stream")


async def test_openai_dropped_stream_breaks_after_some_text(fake: FakeModelServer) -> None:
    fake.set_script(
        Script([Turn(text="a long answer cut short", chunk_size=4, fault="drop_stream")])
    )
    pieces: list[str] = []
    finish_reasons: list[Any] = []
    async with openai_client(fake) as client:
        stream = await client.chat.completions.create(
            model=OPENAI_MODEL, messages=OPENAI_HELLO, stream=True
        )
        with pytest.raises(openai.APIConnectionError) as raised:
            async for chunk in stream:
                pieces.append(chunk.choices[0].delta.content or "")
                finish_reasons.append(chunk.choices[0].finish_reason)
    assert isinstance(raised.value.__cause__, httpx2.RemoteProtocolError)
    assert "".join(pieces) and CUT_SHORT.text.startswith("".join(pieces))
    assert "".join(pieces) != CUT_SHORT.text
    assert finish_reasons == [None] * len(finish_reasons)


async def test_anthropic_dropped_stream_breaks_before_message_stop(fake: FakeModelServer) -> None:
    fake.set_script(
        Script([Turn(text="a long answer cut short", chunk_size=4, fault="drop_stream")])
    )
    kinds: list[str] = []
    async with anthropic_client(fake) as client:
        stream = await client.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=9, messages=ANTHROPIC_HELLO, stream=True
        )
        with pytest.raises(httpx2.RemoteProtocolError):
            async for event in stream:
                kinds.append(event.type)
    assert "content_block_delta" in kinds and "message_stop" not in kinds


async def test_a_dropped_plain_answer_is_a_connection_error(fake: FakeModelServer) -> None:
    fake.set_script(Script([Turn(text="cut", fault="drop_stream")] * 2))
    async with openai_client(fake) as oai, anthropic_client(fake) as ant:
        with pytest.raises(openai.APIConnectionError):
            await oai.chat.completions.create(model=OPENAI_MODEL, messages=OPENAI_HELLO)
        with pytest.raises(anthropic.APIConnectionError):
            await ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=9, messages=ANTHROPIC_HELLO)


async def test_a_stream_ended_early_lacks_its_final_events(fake: FakeModelServer) -> None:
    early = Turn(text="unfinished business", chunk_size=4, fault="end_stream_early")
    fake.set_script(Script([early, early]))
    async with openai_client(fake) as oai, anthropic_client(fake) as ant:
        chunks = [
            chunk
            async for chunk in await oai.chat.completions.create(
                model=OPENAI_MODEL, messages=OPENAI_HELLO, stream=True
            )
        ]
        kinds = [
            event.type
            async for event in await ant.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=9, messages=ANTHROPIC_HELLO, stream=True
            )
        ]
    assert chunks and all(chunk.choices[0].finish_reason is None for chunk in chunks)
    assert "content_block_delta" in kinds and "message_stop" not in kinds


async def test_retry_after_is_sent_in_seconds_and_milliseconds(fake: FakeModelServer) -> None:
    limited = ScriptedError(status=429, message="slow down", retry_after_s=3, retry_after_ms=2500)
    fake.set_script(Script([Turn(error=limited), Turn(error=limited)]))
    async with openai_client(fake) as oai, anthropic_client(fake) as ant:
        with pytest.raises(openai.RateLimitError) as from_openai:
            await oai.chat.completions.create(model=OPENAI_MODEL, messages=OPENAI_HELLO)
        with pytest.raises(anthropic.RateLimitError) as from_anthropic:
            await ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=9, messages=ANTHROPIC_HELLO)
    for headers in (from_openai.value.response.headers, from_anthropic.value.response.headers):
        assert (headers["retry-after"], headers["retry-after-ms"]) == ("3", "2500")


# --------------------------------------------------------------------------- script and record


async def test_turns_are_consumed_in_order_across_both_endpoints(fake: FakeModelServer) -> None:
    fake.set_script(Script.of_texts("one", "two"))
    async with openai_client(fake) as oai, anthropic_client(fake) as ant:
        first = await oai.chat.completions.create(model=OPENAI_MODEL, messages=OPENAI_HELLO)
        second = await ant.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=9, messages=ANTHROPIC_HELLO
        )
        third = await oai.chat.completions.create(model=OPENAI_MODEL, messages=OPENAI_HELLO)
    assert first.choices[0].message.content == "one"
    assert [getattr(b, "text", None) for b in second.content] == ["two"]
    assert third.choices[0].message.content == NO_MORE_TURNS_TEXT


async def test_every_request_is_recorded_with_path_headers_and_body(
    fake: FakeModelServer,
) -> None:
    fake.set_script(Script.of_texts("a", "b"))
    async with openai_client(fake) as oai, anthropic_client(fake) as ant:
        await oai.chat.completions.create(model=OPENAI_MODEL, messages=OPENAI_HELLO)
        await ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=9, messages=ANTHROPIC_HELLO)
    openai_request, anthropic_request = fake.requests
    assert openai_request.path == "/v1/chat/completions"
    assert openai_request.headers["authorization"] == "Bearer sk-test"
    assert openai_request.body == {"model": OPENAI_MODEL, "messages": OPENAI_HELLO}
    assert anthropic_request.path == "/v1/messages"
    key_headers = (anthropic_request.headers.get(h, "") for h in ("x-api-key", "authorization"))
    assert any(value.endswith("sk-ant-test") for value in key_headers)
    assert "anthropic-version" in anthropic_request.headers
    assert anthropic_request.body["max_tokens"] == 9


async def test_delay_holds_the_answer_back(fake: FakeModelServer) -> None:
    fake.set_script(Script([Turn(text="late", delay_s=0.3)]))
    started = time.monotonic()
    async with openai_client(fake) as client:
        answer = await client.chat.completions.create(model=OPENAI_MODEL, messages=OPENAI_HELLO)
    assert time.monotonic() - started >= 0.3
    assert answer.choices[0].message.content == "late"


def test_script_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    path.write_text(
        json.dumps(
            {
                "turns": [
                    {"text": "hi", "chunk_size": 2},
                    {"tool_calls": [{"name": "grep", "arguments": {"pattern": "x"}}]},
                    {"error": {"status": 500, "message": "boom"}},
                ]
            }
        )
    )
    script = Script.from_file(path)
    assert script.remaining == 3
    assert script.next_turn() == Turn(text="hi", chunk_size=2)
    assert script.next_turn().tool_calls[0].arguments_text() == '{"pattern": "x"}'
    assert script.next_turn().error == ScriptedError(status=500, message="boom")
    assert script.next_turn().text == NO_MORE_TURNS_TEXT


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"turns": [{"txt": "typo"}]}', "txt"),
        ('{"turns": [{"error": {"status": 200}}]}', "status"),
        ("not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
    ],
)
def test_bad_script_files_say_what_is_wrong(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "script.json"
    path.write_text(content)
    with pytest.raises(ScriptError, match=expected):
        Script.from_file(path)


def test_command_line_server_prints_its_address_then_serves_and_records(tmp_path: Path) -> None:
    script_path, record_path = tmp_path / "script.json", tmp_path / "requests.jsonl"
    script_path.write_text(json.dumps({"turns": [{"text": "from the subprocess"}]}))
    command = [sys.executable, "-m", "cairn_fakes", "--script", str(script_path)]
    process = subprocess.Popen(
        [*command, "--record", str(record_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        endpoints = json.loads(process.stdout.readline())
        assert endpoints["openai_base_url"] == f"http://127.0.0.1:{endpoints['port']}/v1"
        assert endpoints["anthropic_base_url"] == f"http://127.0.0.1:{endpoints['port']}"
        with openai.OpenAI(api_key="k", base_url=endpoints["openai_base_url"]) as client:
            answer = client.chat.completions.create(model=OPENAI_MODEL, messages=OPENAI_HELLO)
        assert answer.choices[0].message.content == "from the subprocess"
        recorded = [json.loads(line) for line in record_path.read_text().splitlines()]
        assert [(r["path"], r["body"]["messages"]) for r in recorded] == [
            ("/v1/chat/completions", OPENAI_HELLO)
        ]
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_command_line_server_rejects_a_bad_script(tmp_path: Path) -> None:
    script_path = tmp_path / "script.json"
    script_path.write_text('{"turns": [{"unknown": 1}]}')
    result = subprocess.run(
        [sys.executable, "-m", "cairn_fakes", "--script", str(script_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "unknown" in result.stderr


# --------------------------------------------------------------------------- quirk modes


async def test_llama_cpp_python_mode_reproduces_its_server(fake: FakeModelServer) -> None:
    """As llama-cpp-python 0.3's server: GET /models owned by "me"; tools ignored unless
    tool_choice is sent; "auto" streamed, or a prompt over the window streamed, answered
    with an empty 200; the overflow unstreamed is its 400; streams carry no usage."""
    fake.quirks = "llama-cpp-python"
    read_tool: Any = {
        "type": "function",
        "function": {"name": "read", "parameters": {"type": "object", "properties": {}}},
    }
    calling = Turn(text="Reading.", tool_calls=(ScriptedToolCall(name="read"),))
    fake.set_script(Script([calling, calling, calling]))
    try:
        async with openai_client(fake) as client:
            models = await client.models.list()
            dropped = await client.chat.completions.create(
                model=OPENAI_MODEL, messages=OPENAI_HELLO, tools=[read_tool]
            )
            called = await client.chat.completions.create(
                model=OPENAI_MODEL, messages=OPENAI_HELLO, tools=[read_tool], tool_choice="auto"
            )
            chunks = await client.chat.completions.create(
                model=OPENAI_MODEL,
                messages=OPENAI_HELLO,
                stream=True,
                stream_options={"include_usage": True},
            )
            streamed = [chunk async for chunk in chunks]
            refused = await client.chat.completions.create(
                model=OPENAI_MODEL,
                messages=OPENAI_HELLO,
                tools=[read_tool],
                tool_choice="auto",
                stream=True,
            )
            assert [chunk async for chunk in refused] == []
            fake.context_window = 5
            overflowing = await client.chat.completions.create(
                model=OPENAI_MODEL, messages=OPENAI_HELLO, stream=True
            )
            assert [chunk async for chunk in overflowing] == []
            with pytest.raises(openai.BadRequestError) as raised:
                await client.chat.completions.create(
                    model=OPENAI_MODEL, messages=OPENAI_HELLO, max_tokens=64
                )
    finally:
        fake.reset()
    assert [model.owned_by for model in models.data] == ["me"]
    assert dropped.choices[0].message.tool_calls is None
    assert dropped.choices[0].message.content == "Reading."
    assert called.choices[0].message.tool_calls is not None
    assert all(chunk.usage is None for chunk in streamed)
    assert raised.value.code == "context_length_exceeded"
    assert "(" in str(raised.value) and "64 in the completion" in str(raised.value)

"""The fake model server, checked with the real openai and anthropic SDKs on loopback.

If the official SDKs accept what the fake sends (plain and streamed, without warnings), the
provider tests and every test built on the fake exercise the real wire protocols.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import openai
import pytest
from anthropic.types import MessageParam
from cairn_server.fakes import (
    NO_MORE_TURNS_TEXT,
    FakeModelServer,
    Script,
    ScriptedError,
    ScriptedToolCall,
    ScriptError,
    Turn,
)
from openai.types.chat import ChatCompletionMessageParam

pytestmark = pytest.mark.filterwarnings("error")

OPENAI_MODEL = "gpt-5.4-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-6"
OPENAI_HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
ANTHROPIC_HELLO: list[MessageParam] = [{"role": "user", "content": "hello"}]


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
    assert usage.completion_tokens == len(text) // 4
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
    assert first.usage is not None and first.usage.completion_tokens == len("plain answer") // 4
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
    assert message.usage.output_tokens == len("Let me look.") // 4
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
                model="nope", max_tokens=100, messages=ANTHROPIC_HELLO, stream=True
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
    command = [sys.executable, "-m", "cairn_server.fakes", "--script", str(script_path)]
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
        [sys.executable, "-m", "cairn_server.fakes", "--script", str(script_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "unknown" in result.stderr

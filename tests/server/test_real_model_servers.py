"""Real OpenAI-compatible servers' ways, through the real server and the fake imitating them:
tools on llama-cpp-python's server, its silent (empty 200) overflow, a window and a token
ratio learned and kept across a restart, the answer's token cap and what a cut answer does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cairn_fakes.runner import FakeModelServer
from cairn_protocol import (
    ContextCompacted,
    RunFinished,
    StepFinished,
    ToolRequest,
    ToolResult,
    UserMessage,
)
from support.servers import cairn_server, call, script, sqlite_url
from support.wire import WireClient, connected

LOCAL_MODEL = "openai/smollm2-135m-instruct"  # unknown to Cairn: its window is a guess


def local(**env: str) -> dict[str, Any]:
    """Server settings for a local model (of unknown window) with these variables."""
    return {"env": {"CAIRN_MODEL": LOCAL_MODEL, **env}}


async def run_once(client: WireClient, text: str, answer_tools: bool = True) -> RunFinished:
    """Send one message, answer its tool requests with a short output, return its end."""
    await client.send(UserMessage(text=text))
    while True:
        frame = await client.recv(timeout=20)
        if isinstance(frame, ToolRequest) and answer_tools:
            await client.send(ToolResult(call_id=frame.call_id, status="ok", content="x = 1"))
        elif isinstance(frame, RunFinished):
            return frame


def tool_requests(client: WireClient) -> list[ToolRequest]:
    return [frame for frame in client.seen if isinstance(frame, ToolRequest)]


def tool_results_sent(fake: FakeModelServer, index: int = -1) -> list[str]:
    messages = fake.requests[index].body["messages"]
    return [str(m["content"]) for m in messages if m["role"] == "tool"]


# --------------------------------------------------------------------------- tools


async def test_llama_cpp_python_gets_tools_unstreamed_with_tool_choice_auto(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    """Probed as llama-cpp-python (owned_by "me"), the server is sent tool_choice "auto"
    without streaming, the one way it makes tool calls: the read reaches the client."""
    fake_model.quirks = "llama-cpp-python"
    fake_model.set_script(
        script({"tool_calls": [call("read", path="a.py")]}, {"text": "a.py sets x."})
    )
    with cairn_server(sqlite_url(tmp_path), fake_model, **local()) as server:
        client, _ = await connected(server.url)
        finished = await run_once(client, "what does a.py set?")
        await client.close()
    assert (finished.stop_reason, finished.detail) == ("end_turn", None)
    assert [r.tool for r in tool_requests(client)] == ["read"]
    first = fake_model.requests[0].body
    assert first["tool_choice"] == "auto" and not first.get("stream")


async def test_llama_cpp_python_without_tool_choice_is_told_once(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    """CAIRN_MODEL_TOOL_CHOICE=omit: llama-cpp-python drops the tools, the model's call is
    never made, and the first run's end says why and what to change; the next run does not
    say it again."""
    fake_model.quirks = "llama-cpp-python"
    fake_model.set_script(
        script(
            {"text": "I would read a.py.", "tool_calls": [call("read", path="a.py")]},
            {"text": "Still no tools."},
        )
    )
    settings = local(CAIRN_MODEL_TOOL_CHOICE="omit")
    with cairn_server(sqlite_url(tmp_path), fake_model, **settings) as server:
        client, _ = await connected(server.url)
        first = await run_once(client, "read a.py")
        second = await run_once(client, "and now?")
        await client.close()
    assert not tool_requests(client)
    assert first.stop_reason == "end_turn"
    assert "llama-cpp-python" in (first.detail or "")
    assert "Unset CAIRN_MODEL_TOOL_CHOICE" in (first.detail or "")
    assert (second.stop_reason, second.detail) == ("end_turn", None)
    assert "tool_choice" not in fake_model.requests[0].body


async def test_tool_choice_none_is_said_plainly_and_other_choices_are_sent(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "ok"}, {"text": "ok"}))
    with cairn_server(
        sqlite_url(tmp_path), fake_model, **local(CAIRN_MODEL_TOOL_CHOICE="none")
    ) as server:
        client, _ = await connected(server.url)
        finished = await run_once(client, "hi")
        await client.close()
    assert "CAIRN_MODEL_TOOL_CHOICE=none" in (finished.detail or "")
    assert fake_model.requests[-1].body["tool_choice"] == "none"

    with cairn_server(
        sqlite_url(tmp_path), fake_model, **local(CAIRN_MODEL_TOOL_CHOICE="required")
    ) as server:
        client, _ = await connected(server.url)
        finished = await run_once(client, "hi")
        await client.close()
    assert (finished.stop_reason, finished.detail) == ("end_turn", None)
    body = fake_model.requests[-1].body
    assert body["tool_choice"] == "required" and body["stream"] is True


async def test_a_usual_server_is_sent_no_tool_choice(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"tool_calls": [call("read", path="a.py")]}, {"text": "ok"}))
    with cairn_server(sqlite_url(tmp_path), fake_model, **local()) as server:
        client, _ = await connected(server.url)
        finished = await run_once(client, "read a.py")
        await client.close()
    assert (finished.stop_reason, finished.detail) == ("end_turn", None)
    assert len(tool_requests(client)) == 1
    assert "tool_choice" not in fake_model.requests[0].body
    assert fake_model.requests[0].body["stream"] is True


async def test_garbage_tool_calls_of_a_small_model_are_errors_it_reads(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    """Unstreamed (llama-cpp-python's way): arguments that are a list, an invented tool, a
    server tool given the wrong types and a nameless call each get a tool error the model
    is sent; nothing reaches the client and the run ends cleanly."""
    fake_model.quirks = "llama-cpp-python"
    fake_model.set_script(
        script(
            {
                "tool_calls": [
                    {"name": "read", "raw_arguments": '["a.py"]'},
                    call("write file", path="a.py"),
                    call("conversation_search", query=["x"], limit="many"),
                ]
            },
            {"text": "Sorry."},
        )
    )
    with cairn_server(sqlite_url(tmp_path), fake_model, **local()) as server:
        client, _ = await connected(server.url)
        finished = await run_once(client, "go")
        await client.close()
    assert (finished.stop_reason, finished.detail) == ("end_turn", None)
    assert not tool_requests(client)
    results = tool_results_sent(fake_model)
    assert len(results) == 3 and all(r.startswith("Error:") for r in results)
    assert "must be a JSON object" in results[0]
    assert "unknown tool 'write file'" in results[1]
    assert "conversation_search" in results[2] and "query" in results[2]


# --------------------------------------------------------------------------- the token cap


async def test_the_answer_cap_is_sized_to_the_window_or_set(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "ok"}, {"text": "ok"}))
    with cairn_server(sqlite_url(tmp_path), fake_model, **local()) as server:
        client, _ = await connected(server.url)
        await run_once(client, "hi")
        await client.close()
    assert fake_model.requests[-1].body["max_tokens"] == 4096  # a 128k guess: the usual cap
    with cairn_server(
        sqlite_url(tmp_path), fake_model, **local(CAIRN_MODEL_MAX_TOKENS="300")
    ) as server:
        client, _ = await connected(server.url)
        await run_once(client, "hi")
        await client.close()
    assert fake_model.requests[-1].body["max_tokens"] == 300


async def test_an_answer_cut_at_the_cap_ends_the_run_as_truncated(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    """finish_reason "length": the run ends "truncated" saying how to go on, and a tool call
    cut mid-arguments is not run (the model is told so when the user says continue)."""
    fake_model.set_script(
        script(
            {"text": "The answer is long and", "cut_at_cap": True},
            {
                "text": "Writing it:",
                "tool_calls": [
                    {"name": "write", "raw_arguments": '{"path": "a.py", "content": "x = '}
                ],
                "cut_at_cap": True,
            },
            {"text": "Done."},
        )
    )
    settings = local(CAIRN_MODEL_MAX_TOKENS="64")
    with cairn_server(sqlite_url(tmp_path), fake_model, **settings) as server:
        client, _ = await connected(server.url)
        cut = await run_once(client, "explain")
        cut_call = await run_once(client, "write a.py")
        went_on = await run_once(client, "continue")
        await client.close()
    assert cut.stop_reason == "truncated"
    assert "cut at 64 tokens" in (cut.detail or "")
    assert "CAIRN_MODEL_MAX_TOKENS" in (cut.detail or "")
    assert cut_call.stop_reason == "truncated" and not tool_requests(client)
    assert went_on.stop_reason == "end_turn"
    [result] = tool_results_sent(fake_model)
    assert result.startswith("Error: not run: the answer was cut at the cap of 64 tokens")


# --------------------------------------------------------------------------- windows


async def test_a_silent_overflow_is_recovered_and_the_window_survives_a_restart(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    """llama-cpp-python answers a streamed prompt over its window with an empty 200: taken
    for an overflow (the prompt was big enough), the run compacts and goes on; a new server
    process on the same database starts from the budget it learned (no overflow again)."""
    fake_model.quirks = "llama-cpp-python"
    fake_model.set_script(
        script(*[{"text": f"Answer {k}: noted, {'detail ' * 40}"} for k in range(12)])
    )
    settings = local(CAIRN_MODEL_TOOL_CHOICE="omit")
    database = sqlite_url(tmp_path)
    with cairn_server(database, fake_model, **settings) as server:
        client, _ = await connected(server.url)
        for k in range(5):
            await run_once(client, f"Turn {k}: {'tell me about the cache layer. ' * 30}")
        window = int(max(f.context_tokens for f in client.seen if isinstance(f, StepFinished)))
        fake_model.context_window = window * 9 // 10  # the next request overflows
        finished = await run_once(client, "Turn 5: and the invalidation?")
        await client.close()
    assert finished.stop_reason == "end_turn"
    overflows = [f for f in client.seen if isinstance(f, ContextCompacted)]
    assert [f.trigger for f in overflows] == ["overflow"]

    with cairn_server(database, fake_model, **settings) as server:
        client, _ = await connected(server.url)
        for k in range(6, 14):
            again = await run_once(client, f"Turn {k}: {'tell me about the cache layer. ' * 30}")
            assert again.stop_reason == "end_turn"
        await client.close()
    compactions = [f.trigger for f in client.seen if isinstance(f, ContextCompacted)]
    assert compactions and "overflow" not in compactions  # compacted in time, by the budget


async def test_an_empty_200_far_below_a_known_window_is_an_error_naming_the_causes(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    """gpt-4o-mini's window is known (128k): a few thousand tokens cannot overflow it, so an
    empty 200 is not taken for an overflow; it is not retried (the same request would be
    refused again) and the error names what llama-cpp-python refuses so."""
    fake_model.quirks = "llama-cpp-python"
    fake_model.context_window = 100  # refuses everything, without a word
    fake_model.set_script(script({"text": "unreached"}))
    settings: dict[str, Any] = {"env": {"CAIRN_MODEL_TOOL_CHOICE": "omit"}}
    with cairn_server(sqlite_url(tmp_path), fake_model, **settings) as server:
        client, _ = await connected(server.url)
        finished = await run_once(client, "hi")
        await client.close()
    assert finished.stop_reason == "model_error"
    detail = finished.detail or ""
    assert "empty stream" in detail and 'tool_choice "auto" while streaming' in detail
    assert "context window" in detail
    assert len(fake_model.requests) == 1  # not retried


async def test_token_counts_are_calibrated_by_what_the_server_reports(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    """A model whose tokenizer makes 1.3 tokens of each counted one: the budget shrinks to
    match after its first answers, and a restarted server starts from that ratio."""
    fake_model.token_scale = 1.3
    fake_model.set_script(script(*[{"text": "ok"} for _ in range(4)]))
    database = sqlite_url(tmp_path)
    with cairn_server(database, fake_model, context_budget=10_000, **local()) as server:
        client, _ = await connected(server.url)
        await run_once(client, "first")
        await run_once(client, "second")
        await client.close()
    steps = [f for f in client.seen if isinstance(f, StepFinished)]
    # The budget in counted tokens holds what 10,000 of the model's own tokens hold.
    ratio = steps[0].usage.input_tokens / steps[0].context_tokens
    assert ratio > 1.2
    assert steps[0].context_budget == 10_000  # before the server had counted anything
    assert abs(steps[1].context_budget - 10_000 / ratio) < 100
    with cairn_server(database, fake_model, context_budget=10_000, **local()) as server:
        client, _ = await connected(server.url)
        await run_once(client, "third")
        await client.close()
    [restarted] = [f for f in client.seen if isinstance(f, StepFinished)]
    assert abs(restarted.context_budget - 10_000 / ratio) < 100

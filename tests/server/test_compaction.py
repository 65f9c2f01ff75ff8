"""Budget and compaction through the real server: long conversations that never overflow.

A scripted conversation runs over the websocket against the fake OpenAI server with a small
budget; summaries come from a second fake server (CAIRN_SUMMARY_MODEL, Anthropic), so the
main script never has to guess when a compaction happens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_fakes.script import Script, Turn
from cairn_protocol import (
    CLIENT_TOOLS,
    Compact,
    ContextCompacted,
    ErrorEvent,
    RunFinished,
    RunStarted,
    StepFinished,
    ToolRequest,
    ToolResult,
    UserMessage,
)
from cairn_server.context.compiler import AgentContext, compile_context, count_context
from cairn_server.context.memory_view import MemorySections
from cairn_server.context.tokens import count_tokens
from cairn_server.tools.registry import SERVER_TOOLS, TOOLS
from support.servers import cairn_server, call, script, sqlite_url, with_summaries
from support.wire import WireClient, asked_for_a_tool

BUDGET = 6000
THRESHOLD = 0.8
LONG_OUTPUT = "\n".join(
    f"{n:4}\tvalue_{n} = compute({n}, mode='fast')  # step {n}" for n in range(60)
)


def conversation_script(turns: int) -> Script:
    """Turn k: a plain answer, or (every fifth) a read of a file first."""
    scripted: list[dict[str, Any]] = []
    for k in range(turns):
        if k % 5 == 2:
            scripted.append(
                {"text": f"Reading mod{k}.", "tool_calls": [call("read", path=f"src/mod{k}.py")]}
            )
        scripted.append({"text": f"Answer {k}: mod{k} keeps its cache in memory; noted."})
    return script(*scripted)


def user_text(k: int) -> str:
    return (
        f"Turn {k}: look at feature-{k} in src/mod{k}.py and tell me whether its cache "
        "invalidation is right; the tests in tests/test_cache.py fail now and then."
    )


async def whole_session(server_url: str, turns: int) -> tuple[WireClient, list[RunFinished]]:
    """Connect, converse for `turns` turns, disconnect; the client keeps what it saw."""
    client = await WireClient.connect(server_url)
    await client.hello()
    finished = await converse(client, turns)
    await client.close()
    return client, finished


async def converse(client: WireClient, turns: int) -> list[RunFinished]:
    """Send `turns` user messages, answering every tool request with a long output."""
    finished: list[RunFinished] = []
    for k in range(turns):
        await client.send(UserMessage(text=user_text(k)))
        while True:
            frame = await client.recv(timeout=20)
            if isinstance(frame, ToolRequest):
                await client.send(
                    ToolResult(call_id=frame.call_id, status="ok", content=LONG_OUTPUT)
                )
            elif isinstance(frame, RunFinished):
                finished.append(frame)
                break
    return finished


def request_tokens(body: dict[str, Any]) -> int:
    """An independent count of what the fake model received: every text and schema."""
    texts = [json.dumps(tool, separators=(",", ":")) for tool in body.get("tools", [])]
    for message in body["messages"]:
        content = message.get("content") or ""
        texts.append(content if isinstance(content, str) else json.dumps(content))
        texts.extend(c["function"]["arguments"] for c in message.get("tool_calls") or [])
    return sum(count_tokens(text) for text in texts)


def paired(messages: list[dict[str, Any]]) -> bool:
    """Every tool result follows the assistant message that made its call."""
    open_calls: set[str] = set()
    for message in messages:
        if message["role"] == "assistant":
            open_calls = {c["id"] for c in message.get("tool_calls") or []}
        elif message["role"] == "tool" and message["tool_call_id"] not in open_calls:
            return False
    return True


async def test_a_200_turn_conversation_never_exceeds_its_budget(
    tmp_path: Path, fake_model: FakeModelServer, summaries: FakeModelServer
) -> None:
    turns = 200
    fake_model.set_script(conversation_script(turns))
    summaries.set_script(
        Script([Turn(text=f"SUMMARY-{n}: goals, files, errors.") for n in range(80)])
    )
    with cairn_server(
        sqlite_url(tmp_path),
        fake_model,
        context_budget=BUDGET,
        compaction_threshold=THRESHOLD,
        **with_summaries(summaries),
    ) as server:
        client, finished = await whole_session(server.url, turns)

    assert [f.stop_reason for f in finished] == ["end_turn"] * turns
    requests = [r.body for r in fake_model.requests]
    assert all(paired(body["messages"]) for body in requests)
    assert max(request_tokens(body) for body in requests) <= BUDGET

    steps = [f for f in client.seen if isinstance(f, StepFinished)]
    compactions = [f for f in client.seen if isinstance(f, ContextCompacted)]
    assert len(steps) == len(requests) and max(s.context_tokens for s in steps) <= BUDGET
    assert len(compactions) >= 3 and len(summaries.requests) == len(compactions)
    trigger = int(BUDGET * THRESHOLD)
    for compaction in compactions:
        assert compaction.method == "summary" and compaction.trigger == "threshold"
        assert compaction.tokens_before > trigger >= compaction.tokens_after
    # Only then: every step sent without a compaction before it stayed under the trigger.
    order = [f for f in client.seen if isinstance(f, StepFinished | ContextCompacted)]
    for before, step in zip(order, order[1:], strict=False):
        if isinstance(step, StepFinished) and not isinstance(before, ContextCompacted):
            assert step.context_tokens <= trigger

    # The summary reaches the next request; between compactions the prefix never changes.
    summary_count = 0
    for previous, body in zip(requests, requests[1:], strict=False):
        system = body["messages"][0]["content"]
        if system != previous["messages"][0]["content"]:
            summary_count += 1
            assert f"SUMMARY-{summary_count - 1}" in system
            continue
        assert body["tools"] == previous["tools"]
        assert body["messages"][: len(previous["messages"])] == previous["messages"]
    assert summary_count == len(compactions)


async def test_a_failing_summariser_falls_back_to_a_digest(
    tmp_path: Path, fake_model: FakeModelServer, summaries: FakeModelServer
) -> None:
    fake_model.set_script(conversation_script(40))
    refusal = {"error": {"status": 400, "message": "summaries are off today"}}
    summaries.set_script(script(*[refusal] * 20))
    with cairn_server(
        sqlite_url(tmp_path), fake_model, context_budget=BUDGET, **with_summaries(summaries)
    ) as server:
        client, finished = await whole_session(server.url, 40)

    assert {f.stop_reason for f in finished} == {"end_turn"}
    compactions = [f for f in client.seen if isinstance(f, ContextCompacted)]
    assert compactions and all(c.method == "trim" for c in compactions)
    assert "summary model failed" in (compactions[0].detail or "")
    last_system = fake_model.requests[-1].body["messages"][0]["content"]
    assert "Compacted without a model summary" in last_system
    assert "Turn 39" not in last_system and "conversation_search" in last_system
    assert max(request_tokens(r.body) for r in fake_model.requests) <= BUDGET


async def test_an_overlong_summary_is_not_used(
    tmp_path: Path, fake_model: FakeModelServer, summaries: FakeModelServer
) -> None:
    fake_model.set_script(conversation_script(40))
    summaries.set_script(Script([Turn(text="word " * 3000)] * 20))
    with cairn_server(
        sqlite_url(tmp_path), fake_model, context_budget=BUDGET, **with_summaries(summaries)
    ) as server:
        client, _ = await whole_session(server.url, 40)
    compactions = [f for f in client.seen if isinstance(f, ContextCompacted)]
    assert compactions and {c.method for c in compactions} == {"trim"}
    assert "over the limit" in (compactions[0].detail or "")


async def test_compact_on_request_and_its_refusals(
    tmp_path: Path, fake_model: FakeModelServer, summaries: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"text": "First answer."},
            {"text": "Second answer."},
            {"text": "Slow answer.", "delay_s": 1.0},
            {"text": "After compaction."},
        )
    )
    summaries.set_script(script({"text": "SUMMARY: the user asked two things."}))
    with cairn_server(sqlite_url(tmp_path), fake_model, **with_summaries(summaries)) as server:
        client = await WireClient.connect(server.url)
        await client.hello()
        await client.send(Compact())
        refused = await client.recv_until(ErrorEvent)
        assert isinstance(refused, ErrorEvent) and refused.code == "nothing_to_compact"

        await converse(client, 2)
        await client.send(Compact(instructions="keep the file names"))
        compacted = await client.recv_until(ContextCompacted)
        assert isinstance(compacted, ContextCompacted)
        assert compacted.trigger == "requested" and compacted.method == "summary"
        assert compacted.messages_compacted >= 2
        assert compacted.tokens_after < compacted.tokens_before
        assert "keep the file names" in json.dumps(summaries.requests[-1].body)

        await client.send(UserMessage(text="a slow one"))
        await client.recv_until(RunStarted)
        await client.send(Compact())
        busy = await client.recv_until(ErrorEvent)
        assert isinstance(busy, ErrorEvent) and busy.code == "run_in_progress"
        await client.recv_until(RunFinished)
        await converse(client, 1)
        await client.close()
    system = fake_model.requests[-1].body["messages"][0]["content"]
    assert "SUMMARY: the user asked two things." in system


@pytest.mark.parametrize("summariser_works", [True, False], ids=["summary", "digest"])
async def test_a_summary_is_stored_without_the_secrets_it_quotes(
    tmp_path: Path, fake_model: FakeModelServer, summaries: FakeModelServer, summariser_works: bool
) -> None:
    token = "ghp_" + "Q8mVt3LxR7wN2cK9pZ4bH6yJ1dF5gS0aE3uT"
    fake_model.set_script(script({"text": "Saved."}, {"text": "Ok."}, {"text": "After."}))
    refusal = {"error": {"status": 400, "message": "summaries are off today"}}
    summary = {"text": f"SUMMARY: the user deploys with {token}."}
    summaries.set_script(script(summary if summariser_works else refusal))
    with cairn_server(sqlite_url(tmp_path), fake_model, **with_summaries(summaries)) as server:
        client = await WireClient.connect(server.url)
        await client.hello()
        for text in (f"deploy with {token}", "and then?"):
            await client.send(UserMessage(text=text))
            await client.recv_until(RunFinished)
        await client.send(Compact())
        compacted = await client.recv_until(ContextCompacted)
        await converse(client, 1)
        await client.close()

    assert isinstance(compacted, ContextCompacted) and compacted.secrets_redacted == 1
    assert compacted.method == ("summary" if summariser_works else "trim")
    system = fake_model.requests[-1].body["messages"][0]["content"]
    assert token not in system and "[REDACTED:github-token]" in system


async def test_a_provider_overflow_compacts_and_retries_once(
    tmp_path: Path, fake_model: FakeModelServer, summaries: FakeModelServer
) -> None:
    """The model's window is smaller than Cairn assumed: its overflow error lowers the budget,
    compacts, and the same step succeeds on the second try."""
    fake_model.set_script(conversation_script(12))
    summaries.set_script(Script([Turn(text=f"SUMMARY-{n}") for n in range(10)]))
    with cairn_server(sqlite_url(tmp_path), fake_model, **with_summaries(summaries)) as server:
        client = await WireClient.connect(server.url)
        await client.hello()
        await converse(client, 6)
        fake_model.context_window = 3700  # below what the first runs used; above the fixed part
        finished = await converse(client, 6)
        await client.close()
    assert [(f.stop_reason, f.detail) for f in finished] == [("end_turn", None)] * 6
    overflows = [
        f for f in client.seen if isinstance(f, ContextCompacted) and f.trigger == "overflow"
    ]
    assert overflows[0].tokens_after < overflows[0].tokens_before
    assert len(overflows) == 1  # later runs start from the budget the error taught


async def test_limits_end_a_run_with_a_reason_the_user_sees(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    reads = [{"tool_calls": [call("read", path="missing.py")]}] * 4
    fake_model.set_script(script(*reads, {"text": "unreached"}, *reads))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client = await WireClient.connect(server.url)
        await client.hello()
        await client.send(UserMessage(text="read missing.py"))
        for _ in range(3):
            request = await client.recv_until(ToolRequest)
            assert isinstance(request, ToolRequest)
            await client.send(
                ToolResult(call_id=request.call_id, status="error", reason="no such file")
            )
        looped = await client.recv_until(RunFinished)
        await client.close()
    assert isinstance(looped, RunFinished) and looped.stop_reason == "loop_detected"
    assert "same failing read call 3 times" in (looped.detail or "")

    limits: list[tuple[dict[str, Any], str]] = [
        ({"run_token_limit": 500}, "token_limit"),
        ({"run_cost_limit_usd": 0.0001}, "cost_limit"),
    ]
    for limit, stop_reason in limits:
        fake_model.set_script(script(*reads))
        with cairn_server(sqlite_url(tmp_path), fake_model, **limit) as server:
            client, request = await asked_for_a_tool(server.url, "read it")
            await client.send(ToolResult(call_id=request.call_id, status="ok", content="x = 1"))
            stopped = await client.recv_until(RunFinished)
            await client.close()
        assert isinstance(stopped, RunFinished) and stopped.stop_reason == stop_reason
        assert stopped.steps == 1 and "limit" in (stopped.detail or "")


async def test_a_server_that_reports_no_usage_is_counted_so_the_token_limit_holds(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    silent = {"tool_calls": [call("read", path="a.py")], "reports_usage": False}
    fake_model.set_script(script(silent, silent, {"text": "unreached"}))
    with cairn_server(sqlite_url(tmp_path), fake_model, run_token_limit=500) as server:
        client, request = await asked_for_a_tool(server.url, "read it")
        await client.send(ToolResult(call_id=request.call_id, status="ok", content="x = 1"))
        stopped = await client.recv_until(RunFinished)
        await client.close()
    assert stopped.stop_reason == "token_limit" and stopped.steps == 1
    assert stopped.usage.input_tokens > 500 and stopped.usage.output_tokens > 0


async def test_anthropic_requests_keep_their_cached_prefix_across_compactions(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    """Against the fake Anthropic server (summaries from the fake OpenAI one): breakpoints
    after the system prompt (which covers the tools before it) and on the newest message of
    every request, most of each prompt read from the cache, and the budget holds."""
    with FakeModelServer() as summaries:
        summaries.set_script(Script([Turn(text=f"SUMMARY-{n}") for n in range(20)]))
        fake_model.set_script(conversation_script(40))
        with cairn_server(
            sqlite_url(tmp_path),
            fake_model,
            provider="anthropic",
            context_budget=BUDGET,
            env={
                "CAIRN_SUMMARY_MODEL": "openai/gpt-5.4-nano",
                "OPENAI_BASE_URL": summaries.openai_base_url,
            },
        ) as server:
            client, finished = await whole_session(server.url, 40)
    assert {f.stop_reason for f in finished} == {"end_turn"}
    assert any(isinstance(f, ContextCompacted) for f in client.seen)
    bodies = [r.body for r in fake_model.requests]
    for body in bodies:
        assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
        assert "cache_control" in json.dumps(body["messages"][-1])
    steps = [f for f in client.seen if isinstance(f, StepFinished)]
    assert max(s.context_tokens for s in steps) <= BUDGET
    cached = [s.usage.cached_input_tokens / s.usage.input_tokens for s in steps[1:]]
    assert sum(share > 0.5 for share in cached) > 0.8 * len(cached)


def test_instructions_and_every_tool_schema_stay_small() -> None:
    context = AgentContext("app", TOOLS.specs(CLIENT_TOOLS))
    tokens = count_context(compile_context(context, MemorySections("", ""), []))
    fixed = {s.name: s.tokens for s in tokens.sections}
    assert fixed["instructions"] + fixed["tools"] < 3000
    assert len(tokens.sections[1].items) == len(CLIENT_TOOLS) + len(SERVER_TOOLS)

"""Opt-in: Cairn against a real OpenAI-compatible server nobody here wrote.

Skipped unless CAIRN_REAL_MODEL is set: a URL (http://host:port/v1) of a running server, or a
GGUF file that the llama.cpp `llama-server` binary at CAIRN_LLAMA_SERVER serves (started here
with `--jinja -c 8192` on a free loopback port). See docs/testing.md. Small models are not
deterministic: every check is about what Cairn does with what the server sent (a streamed
answer, its usage, a refused overflow, an answer cut at the cap), not about what they said.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cairn_fakes.llama import llama_server, real_model_from
from cairn_protocol import (
    AssistantMessage,
    ContextCompacted,
    RunFinished,
    StepFinished,
    ToolRequest,
    ToolResult,
    UserMessage,
)
from cairn_server.api.background import BackgroundServer
from cairn_server.config import ServerSettings
from support.servers import TEST_TOKEN, sqlite_url
from support.wire import WireClient, connected

REAL_MODEL = real_model_from()
pytestmark = [
    pytest.mark.skipif(
        REAL_MODEL is None, reason="set CAIRN_REAL_MODEL (and CAIRN_LLAMA_SERVER) to run"
    ),
    pytest.mark.timeout(900),  # a real model on a CPU: a compaction alone takes minutes
]
MODEL = "openai/smollm2-135m-instruct"
WINDOW = 8192
# A real model answers slowly on a loaded machine.
TURN_TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def real_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert REAL_MODEL is not None
    log = tmp_path_factory.mktemp("llama") / "llama-server.log"
    with llama_server(REAL_MODEL, context=WINDOW, log=log) as url:
        yield url


def settings(tmp_path: Path, url: str, **env: str) -> ServerSettings:
    variables = {"CAIRN_MODEL": MODEL, "OPENAI_BASE_URL": url, "CAIRN_MODEL_RETRIES": "1", **env}
    return ServerSettings.from_env(
        variables, database_url=sqlite_url(tmp_path), bootstrap_token=TEST_TOKEN
    )


async def run_once(client: WireClient, text: str) -> RunFinished:
    """One message; tool requests are answered with a short file."""
    await client.send(UserMessage(text=text))
    while True:
        frame = await client.recv(timeout=TURN_TIMEOUT_S)
        if isinstance(frame, ToolRequest):
            content = "# Demo\nA demo project. It prints hello.\n"
            await client.send(ToolResult(call_id=frame.call_id, status="ok", content=content))
        elif isinstance(frame, RunFinished):
            return frame


def seen(client: WireClient, kind: type[Any]) -> list[Any]:
    return [frame for frame in client.seen if isinstance(frame, kind)]


async def test_a_streamed_answer_with_usage_and_calibrated_counts(
    tmp_path: Path, real_url: str
) -> None:
    with BackgroundServer(settings(tmp_path, real_url)) as server:
        client, _ = await connected(server.url)
        first = await run_once(client, "Say hello in five words.")
        second = await run_once(client, "Now say it in French.")
        await client.close()
    assert {first.stop_reason, second.stop_reason} <= {"end_turn", "truncated"}, first.detail
    assert any(message.text for message in seen(client, AssistantMessage))
    steps = seen(client, StepFinished)
    assert steps and all(step.usage.input_tokens > 0 for step in steps)  # llama-server's count
    ratio = steps[0].usage.input_tokens / steps[0].context_tokens
    if ratio > 1.05:  # cl100k undercounts this model: the budget shrank to match
        assert steps[-1].context_budget < steps[0].context_budget


async def test_a_real_tool_call_goes_to_the_client_and_back(tmp_path: Path, real_url: str) -> None:
    """llama-server --jinja parses the model's tool calls; whatever the model does, the run
    ends cleanly, and a call it makes is run by the client and answered."""
    with BackgroundServer(settings(tmp_path, real_url)) as server:
        client, _ = await connected(server.url)
        finished = await run_once(
            client, "Use the read tool to read the file README.md, then summarise it."
        )
        await client.close()
    assert finished.stop_reason != "model_error", finished.detail
    for request in seen(client, ToolRequest):
        assert request.tool in {"read", "grep", "glob", "edit", "write", "apply_patch", "shell"}


async def test_a_request_over_the_window_is_recovered(tmp_path: Path, real_url: str) -> None:
    """llama-server refuses a prompt over -c with a 400 (exceed_context_size_error): Cairn
    learns the window, shortens the request and the step succeeds."""
    huge = "Here is a log line about the cache layer and its invalidation. " * 900
    with BackgroundServer(settings(tmp_path, real_url)) as server:
        client, _ = await connected(server.url)
        finished = await run_once(client, f"{huge}\nWhat is this log about?")
        await client.close()
    assert finished.stop_reason in {"end_turn", "truncated"}, finished.detail
    assert [c.trigger for c in seen(client, ContextCompacted)][:1] == ["overflow"] or any(
        step.context_budget < WINDOW for step in seen(client, StepFinished)
    )


async def test_an_answer_cut_at_a_small_cap_is_reported_truncated(
    tmp_path: Path, real_url: str
) -> None:
    with BackgroundServer(settings(tmp_path, real_url, CAIRN_MODEL_MAX_TOKENS="16")) as server:
        client, _ = await connected(server.url)
        finished = await run_once(client, "Write a long story about a cat, in ten paragraphs.")
        await client.close()
    assert finished.stop_reason == "truncated", finished.detail
    assert "cut at 16 tokens" in (finished.detail or "")

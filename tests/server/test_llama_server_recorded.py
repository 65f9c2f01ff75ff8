"""What llama.cpp's llama-server really sent (recorded from `llama-server --jinja -c 8192` with
SmolLM2-135M-Instruct, in fixtures/llama_server/), replayed byte for byte on loopback to the
real OpenAI adapter: its overflow 400 and an answer cut at max_tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cairn_server.domain import ModelMessage, ModelRequest
from cairn_server.providers.base import Completed, ContextOverflowError, TextDelta
from cairn_server.providers.openai_provider import OpenAIProvider
from cairn_server.providers.retry import RetryPolicy
from support.servers import replaying_server

RECORDED = Path(__file__).parent / "fixtures" / "llama_server"


@pytest.fixture
def overflow_server() -> Iterator[str]:
    body = (RECORDED / "overflow_400.json").read_bytes()
    with replaying_server(400, body, "application/json") as url:
        yield url


@pytest.fixture
def cut_server() -> Iterator[str]:
    body = (RECORDED / "length.sse").read_bytes()
    with replaying_server(200, body, "text/event-stream") as url:
        yield url


def request() -> ModelRequest:
    return ModelRequest(system="", messages=[ModelMessage("user", "hi")], max_output_tokens=8)


async def test_its_overflow_400_gives_the_window_and_the_prompt_size(overflow_server: str) -> None:
    provider = OpenAIProvider("smollm2", api_key="unused", base_url=overflow_server)
    async with provider:
        with pytest.raises(ContextOverflowError) as raised:
            async for _ in provider.stream(request()):
                pass
    assert (raised.value.prompt_tokens, raised.value.limit) == (12631, 8192)


async def test_its_answer_cut_at_max_tokens_ends_as_max_tokens(cut_server: str) -> None:
    provider = OpenAIProvider(
        "smollm2", api_key="unused", base_url=cut_server, retry=RetryPolicy(max_retries=0)
    )
    async with provider:
        events = [event async for event in provider.stream(request())]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    [completed] = [e for e in events if isinstance(e, Completed)]
    assert text and completed.stop_reason == "max_tokens"
    assert (completed.usage.input_tokens, completed.usage.output_tokens) == (38, 8)

"""Provider adapters pointed at a fake model server, for provider tests.

Shared by the provider and retry tests: one way to build either adapter against a fake.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from cairn_fakes.runner import FakeModelServer
from cairn_server.providers.anthropic_provider import AnthropicProvider
from cairn_server.providers.openai_provider import OpenAIProvider

OPENAI_MODEL = "gpt-5.4-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-6"


def provider_for(
    fake: FakeModelServer, name: str, **options: Any
) -> OpenAIProvider | AnthropicProvider:
    """The `name` ("openai" or "anthropic") adapter for the fake, with test keys."""
    if name == "openai":
        return OpenAIProvider(OPENAI_MODEL, "sk-test", fake.openai_base_url, **options)
    return AnthropicProvider(ANTHROPIC_MODEL, "sk-ant-test", fake.anthropic_base_url, **options)


Adapter = OpenAIProvider | AnthropicProvider


@asynccontextmanager
async def adapters_for(fake: FakeModelServer) -> AsyncIterator[Callable[..., Adapter]]:
    """`make(name, **options)`: `provider_for` the fake; every adapter made is closed after."""
    made: list[Adapter] = []

    def make(name: str, **options: Any) -> Adapter:
        made.append(provider_for(fake, name, **options))
        return made[-1]

    try:
        yield make
    finally:
        for adapter in made:
            await adapter.aclose()

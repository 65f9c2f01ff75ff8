"""Provider adapters pointed at a fake model server, for provider tests.

Shared by the provider and retry tests: one way to build either adapter against a fake.
"""

from __future__ import annotations

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

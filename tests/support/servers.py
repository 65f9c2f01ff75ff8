"""Real servers for tests: the fake model and a Cairn server, both on loopback.

Shared by server, client and end-to-end tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cairn_fakes.runner import FakeModelServer
from cairn_fakes.script import Script
from cairn_server.api.background import BackgroundServer, ThreadedServer
from cairn_server.config import ServerSettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TEST_TOKEN = "cairn_test_token_0123456789"
SUMMARY_MODEL = "anthropic/claude-haiku-4-5"
MODELS = {"openai": "openai/gpt-4o-mini", "anthropic": "anthropic/claude-sonnet-4-6"}


def model_env(fake: FakeModelServer, provider: str = "openai") -> dict[str, str]:
    return {
        "CAIRN_MODEL": MODELS[provider],
        "OPENAI_API_KEY": "test-openai-key",
        "OPENAI_BASE_URL": fake.openai_base_url,
        "ANTHROPIC_API_KEY": "test-anthropic-key",
        "ANTHROPIC_BASE_URL": fake.anthropic_base_url,
    }


def with_summaries(summaries: FakeModelServer) -> dict[str, Any]:
    """Server settings whose summary model (Anthropic) is served by `summaries`, the
    `summaries` fixture's fake (so the main model's script never interleaves with it)."""
    return {
        "env": {
            "CAIRN_SUMMARY_MODEL": SUMMARY_MODEL,
            "ANTHROPIC_BASE_URL": summaries.anthropic_base_url,
            "ANTHROPIC_API_KEY": "test-anthropic-key",
        },
    }


def script(*turns: dict[str, Any]) -> Script:
    return Script.from_dict({"turns": list(turns)})


def read_then_answer() -> Script:
    """A run that waits for one read's result (what it reads does not matter), then answers
    "It sets x."."""
    return script(
        {"text": "Reading.", "tool_calls": [call("read", path="app.py")]},
        {"text": "It sets x."},
    )


def call(name: str, **arguments: Any) -> dict[str, Any]:
    """A scripted tool call, for turns: {"tool_calls": [call("read", path="a.py")]}."""
    return {"name": name, "arguments": arguments}


@contextmanager
def cairn_server(
    database_url: str,
    fake: FakeModelServer,
    provider: str = "openai",
    **overrides: Any,
) -> Iterator[BackgroundServer]:
    env = {**model_env(fake, provider), **overrides.pop("env", {})}
    settings = ServerSettings.from_env(
        env, database_url=database_url, bootstrap_token=TEST_TOKEN, **overrides
    )
    with BackgroundServer(settings) as server:
        yield server


@dataclass
class Served:
    """A running server and the fake model behind it."""

    url: str
    fake: FakeModelServer


def sqlite_url(folder: Path) -> str:
    return f"sqlite+aiosqlite:///{folder / 'cairn.db'}"


@contextmanager
def replaying_server(status: int, body: bytes, media_type: str) -> Iterator[str]:
    """An OpenAI-compatible base URL whose chat completions answer with exactly `body`
    (a recorded or hand-written answer of a server nobody here wrote)."""

    async def chat(request: Request) -> Response:
        return Response(body, status_code=status, media_type=media_type)

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    with ThreadedServer(app) as server:
        yield f"{server.url}/v1"

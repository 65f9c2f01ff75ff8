"""Running the fake model server: in a background thread for tests, or in the foreground.

Owns the fake's uvicorn options and the handles tests use (base URLs, recorded requests,
the context window, the quirk mode, the simulated prompt caches).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import uvicorn
from cairn_server.api.background import ThreadedServer

from cairn_fakes.app import create_app
from cairn_fakes.models import DEFAULT_ANTHROPIC_MODELS, DEFAULT_OPENAI_MODELS
from cairn_fakes.quirks import Quirks
from cairn_fakes.script import Script
from cairn_fakes.state import FakeModelState, RecordedRequest, RequestLog

# No lifespan, no websockets, quick shutdown: the fake only answers HTTP.
UVICORN_OPTIONS: dict[str, Any] = {"lifespan": "off", "ws": "none"}


class FakeModelServer(ThreadedServer):
    """The fake OpenAI + Anthropic server on a free loopback port, in a background thread.

    Use as a context manager (`with FakeModelServer(script) as fake:`), also inside async
    tests: the server runs on its own thread and event loop.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        record_path: Path | None = None,
        port: int = 0,
        context_window: int | None = None,
        quirks: Quirks | None = None,
    ) -> None:
        self._state = FakeModelState(
            script or Script(), RequestLog(record_path), context_window, quirks
        )
        super().__init__(create_app(self._state), port=port, **UVICORN_OPTIONS)
        self.openai_base_url = f"{self.url}/v1"
        self.anthropic_base_url = self.url

    @property
    def script(self) -> Script:
        return self._state.script

    def set_script(self, script: Script, *, keep_cache: bool = False) -> None:
        """Answer the following requests from `script`. The request record is kept; the
        simulated prompt caches are emptied (a new scenario) unless `keep_cache`."""
        self._state.set_script(script, keep_cache=keep_cache)

    @property
    def context_window(self) -> int | None:
        """Prompts longer than this many tokens get the API's context-overflow error."""
        return self._state.context_window

    @context_window.setter
    def context_window(self, tokens: int | None) -> None:
        self._state.context_window = tokens

    @property
    def quirks(self) -> str | None:
        """The real server the chat endpoint imitates (cairn_fakes.quirks), None: OpenAI."""
        return self._state.quirks

    @quirks.setter
    def quirks(self, mode: Quirks | None) -> None:
        self._state.quirks = mode

    @property
    def token_scale(self) -> float:
        """How many of the imitated model's tokens one cl100k token is (default 1): the
        prompt tokens it reports and checks against its window are scaled by it."""
        return self._state.token_scale

    @token_scale.setter
    def token_scale(self, scale: float) -> None:
        if scale <= 0:
            raise ValueError(f"a token scale must be positive, not {scale}")
        self._state.token_scale = scale

    @property
    def openai_models(self) -> tuple[str, ...]:
        """What GET /v1/models lists to the OpenAI SDK; a chat request naming another model
        gets OpenAI's 404 model_not_found (any name is served in the llama-cpp-python mode)."""
        return self._state.openai_models

    @openai_models.setter
    def openai_models(self, names: tuple[str, ...]) -> None:
        self._state.openai_models = tuple(names)

    @property
    def anthropic_models(self) -> tuple[str, ...]:
        """What GET /v1/models lists to the Anthropic SDK; a messages request naming another
        model gets Anthropic's 404 not_found_error."""
        return self._state.anthropic_models

    @anthropic_models.setter
    def anthropic_models(self, names: tuple[str, ...]) -> None:
        self._state.anthropic_models = tuple(names)

    def clear_cache(self) -> None:
        """Forget every cached prompt prefix, as if the caches had expired."""
        self._state.cache.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        return self._state.log.snapshot()

    @property
    def answer_times(self) -> list[float]:
        """perf_counter() when each streamed answer was fully sent, oldest first."""
        return list(self._state.log.answer_times)

    @property
    def lists_served(self) -> int:
        """How many GET /v1/models the fake answered (they are not in `requests`)."""
        return self._state.lists_served

    def clear_requests(self) -> None:
        self._state.log.clear()
        self._state.lists_served = 0

    def reset(self) -> None:
        """As if just started: an empty script, no recorded requests, empty prompt caches,
        an unlimited context window and the default model lists (a running server shared by
        tests in turn)."""
        self.set_script(Script())
        self.clear_requests()
        self.context_window = None
        self.quirks = None
        self.token_scale = 1.0
        self.openai_models = DEFAULT_OPENAI_MODELS
        self.anthropic_models = DEFAULT_ANTHROPIC_MODELS


def serve_forever(
    script: Script,
    *,
    sock: socket.socket,
    record_path: Path | None,
    context_window: int | None = None,
    quirks: Quirks | None = None,
    openai_models: tuple[str, ...] = DEFAULT_OPENAI_MODELS,
    anthropic_models: tuple[str, ...] = DEFAULT_ANTHROPIC_MODELS,
) -> None:
    """Serve on `sock` in this thread until SIGINT/SIGTERM."""
    state = FakeModelState(script, RequestLog(record_path), context_window, quirks)
    state.openai_models, state.anthropic_models = openai_models, anthropic_models
    config = uvicorn.Config(create_app(state), log_level="warning", **UVICORN_OPTIONS)
    uvicorn.Server(config).run(sockets=[sock])
